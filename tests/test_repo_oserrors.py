"""OS errors reach the user as one line naming the operation and the path, never a
traceback; nothing committed is harmed and no temporary file stays behind.

The faults are real: a full disk is a small tmpfs that the test fills (root can mount one),
or, where mounting is not allowed, a file-size limit on the bgit process (RLIMIT_FSIZE:
writes past it fail with EFBIG, "File too large"). "Permission denied" as root needs the
bgit process to give up root's capability to ignore file modes (CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH leave its bounding set before exec); as any other user chmod suffices.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bgit.repo import Repository
from repo_helpers import (BGIT, REPO_ROOT, assert_nothing_lost, bgit_subprocess, git, new_repo, sha256, snapshot,
                          temp_leftovers, write_adapter, write_jsonl)

ADAPTER = "adapter/adapter_model.safetensors"
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


class FullDisk:
    """Runs bgit with only ``room`` bytes left to write: on a small tmpfs filled up to
    ``room`` ("tmpfs"), or under RLIMIT_FSIZE = ``room`` ("rlimit")."""

    def __init__(self, mode: str, directory: Path) -> None:
        self.mode, self.dir = mode, directory
        self.strerror = "No space left on device" if mode == "tmpfs" else "File too large"

    def run(self, cwd: Path, *args: str, room: int) -> subprocess.CompletedProcess:
        if self.mode == "rlimit":
            def limit():
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
                resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))
            return subprocess.run([*BGIT, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                                  preexec_fn=limit, timeout=120)
        filler = self.dir / "filler"
        st = os.statvfs(self.dir)
        with open(filler, "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, max(st.f_bavail * st.f_frsize - room, 1))
        try:
            return subprocess.run([*BGIT, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
        finally:
            filler.unlink()


@pytest.fixture(params=["tmpfs", "rlimit"])
def full_disk(request, tmp_path):
    directory = tmp_path / "disk"
    directory.mkdir()
    if request.param == "rlimit":
        yield FullDisk("rlimit", directory)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the rlimit variant covers it")
    try:
        yield FullDisk("tmpfs", directory)
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def _two_commits(root: Path) -> tuple[Repository, dict[str, dict[str, str]]]:
    repo = Repository.init(root)
    write_jsonl(repo.root / "data.jsonl", 50)
    repo.add(all=True)
    commits = {repo.commit("one"): {}}
    write_adapter(repo.root / ADAPTER, seed=1, rows=20_000)  # 2.7 MB
    repo.add(all=True)
    commits[repo.commit("two")] = {}
    for commit in commits:
        repo.checkout(commit)
        commits[commit] = snapshot(repo)
    repo.checkout("main")
    return repo, commits


def test_full_disk_during_add_is_one_line_and_harms_nothing(full_disk):
    repo, commits = _two_commits(full_disk.dir / "r")
    write_adapter(repo.root / ADAPTER, seed=2, rows=20_000)
    result = full_disk.run(repo.root, "add", ADAPTER, room=256 << 10)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: cannot store {ADAPTER}: {full_disk.strerror}\n"  # no BufferError, no traceback
    assert temp_leftovers(repo.root) == []
    assert repo.status().staged == []
    done = bgit_subprocess(repo.root, "add", ADAPTER)  # with room again, the same add works
    assert done.returncode == 0, done.stderr
    landed = Repository.open(repo.root).commit("three")
    commits[landed] = snapshot(repo)
    assert_nothing_lost(repo.root, commits)


def test_full_disk_during_checkout_is_one_line_and_the_rerun_finishes(full_disk):
    repo, commits = _two_commits(full_disk.dir / "r")
    repo.checkout("HEAD~1", new_branch="small")
    assert not (repo.root / "adapter").exists()
    result = full_disk.run(repo.root, "checkout", "main", room=256 << 10)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: cannot write {ADAPTER}: {full_disk.strerror}\n"
    assert git(repo.root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "small"  # HEAD did not move
    assert not (repo.root / "adapter").exists()  # nor a half file, nor the directory made for it
    assert temp_leftovers(repo.root) == []
    done = bgit_subprocess(repo.root, "checkout", "main")
    assert done.returncode == 0, done.stderr
    assert snapshot(repo) == commits[str(repo.resolve("main").id)]
    assert_nothing_lost(repo.root, commits)


def test_full_disk_while_writing_a_file_that_bypasses_the_page_cache(full_disk):
    """Files of DIRECT_MIN (64 MiB) and more are written with O_DIRECT (store.writers)."""
    from bgit.store.files import DIRECT_MIN

    repo, commits = _two_commits(full_disk.dir / "r")
    write_adapter(repo.root / ADAPTER, seed=4, rows=DIRECT_MIN // 136 + 1000)  # 136 bytes a row
    assert (repo.root / ADAPTER).stat().st_size > DIRECT_MIN
    repo.add([ADAPTER])
    landed = repo.commit("big")
    commits[landed] = snapshot(repo)
    repo.checkout("HEAD~1")
    result = full_disk.run(repo.root, "checkout", "main", room=8 << 20)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"Error: cannot write {ADAPTER}: {full_disk.strerror}\n"
    assert temp_leftovers(repo.root) == []
    assert_nothing_lost(repo.root, commits)


def test_a_disk_with_no_room_at_all_refuses_commit_in_one_line(full_disk):
    repo, commits = _two_commits(full_disk.dir / "r")
    (repo.root / "note.txt").write_text("a note\n")
    repo.add(["note.txt"])
    result = full_disk.run(repo.root, "commit", "-m", "full", room=0)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr == f"Error: cannot lock {repo.bgit_dir / 'lock'}: {full_disk.strerror}\n"
    assert len(commits) == int(git(repo.root, "rev-list", "--count", "HEAD").stdout)
    assert bgit_subprocess(repo.root, "commit", "-m", "room again").returncode == 0
    commits[str(Repository.open(repo.root).head_commit().id)] = snapshot(repo)
    assert_nothing_lost(repo.root, commits)


def _without_root_powers():
    """preexec_fn: the child keeps uid 0 but loses the capabilities that let root ignore
    file modes, so a mode-000 file is unreadable to it as to anyone."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_unprivileged(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([*BGIT, *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                              preexec_fn=_without_root_powers, timeout=120)
    except subprocess.SubprocessError as error:
        pytest.skip(f"cannot drop root's file-mode override here: {error}")


def test_permission_denied_on_a_file_to_add(tmp_path):
    repo, commits = _two_commits(tmp_path / "r")
    (repo.root / "secret.txt").write_text("not yours\n")
    write_jsonl(repo.root / "private.jsonl", 20)
    for name in ("secret.txt", "private.jsonl"):
        os.chmod(repo.root / name, 0)
        result = _run_unprivileged(repo.root, "add", name)
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"Error: cannot read {name}: Permission denied\n"
    assert repo.status().staged == [] and temp_leftovers(repo.root) == []
    for name in ("secret.txt", "private.jsonl"):
        os.unlink(repo.root / name)
    assert_nothing_lost(repo.root, commits)


def test_read_only_work_tree_on_checkout(tmp_path):
    repo, commits = _two_commits(tmp_path / "r")
    repo.checkout("main", new_branch="other")
    write_adapter(repo.root / ADAPTER, seed=3, rows=20_000)
    (repo.root / "data.jsonl").unlink()
    repo.add(all=True)
    landed = repo.commit("other")
    commits[landed] = snapshot(repo)
    repo.checkout("main")
    adapter_dir = repo.root / "adapter"
    os.chmod(repo.root, 0o555)  # the file to remove sits in a read-only directory
    try:
        result = _run_unprivileged(repo.root, "checkout", "other")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == "Error: cannot remove data.jsonl: Permission denied\n"
        os.chmod(repo.root, 0o755)
        os.chmod(adapter_dir, 0o555)  # now the file to replace does
        result = _run_unprivileged(repo.root, "checkout", "other")
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == f"Error: cannot write {ADAPTER}: Permission denied\n"
    finally:
        os.chmod(adapter_dir, 0o755)
        os.chmod(repo.root, 0o755)
    assert git(repo.root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"
    assert temp_leftovers(repo.root) == []
    assert bgit_subprocess(repo.root, "checkout", "other").returncode == 0
    assert sha256(repo.root / ADAPTER) == commits[str(repo.head_commit().id)][ADAPTER]
    assert_nothing_lost(repo.root, commits)


def test_clone_and_init_where_nothing_can_be_created(tmp_path):
    repo, _ = _two_commits(tmp_path / "src")
    (tmp_path / "a-file").write_text("in the way\n")
    cases = [
        (["clone", str(repo.root), "a-file"], "Error: bgit clone: a-file: Not a directory\n"),
        (["clone", str(repo.root), "a-file/sub"], f"Error: cannot create {tmp_path / 'a-file' / 'sub'}: Not a directory\n"),
        (["clone", str(repo.root), "/proc/bgit-clone"], "Error: cannot create /proc/bgit-clone: No such file or directory\n"),
        (["init", "/proc/bgit-init"], "Error: cannot create /proc/bgit-init: No such file or directory\n"),
    ]
    for args, expected in cases:
        result = bgit_subprocess(tmp_path, *args)
        assert (result.returncode, result.stderr, result.stdout) == (1, expected, ""), args
    assert (tmp_path / "a-file").read_text() == "in the way\n"


def test_the_cli_turns_a_stray_oserror_into_one_line():
    from click.testing import CliRunner

    from bgit.cli.main import cli, os_error_line

    error = PermissionError(13, "Permission denied", "/x/y")
    assert os_error_line("add", error) == "bgit add: /x/y: Permission denied"
    assert os_error_line("mv", OSError(18, "Invalid cross-device link", "/a", None, "/b")) == \
        "bgit mv: /a -> /b: Invalid cross-device link"
    assert os_error_line("gc", OSError("O_DIRECT is not available")) == "bgit gc: O_DIRECT is not available"
    result = CliRunner().invoke(cli, ["status"], catch_exceptions=False)  # outside a repository: BgitError path
    assert result.exit_code == 1 and result.output.startswith("Error: not a bgit repository")


def test_a_reader_that_leaves_early_is_not_a_traceback(tmp_path):
    repo, _ = _two_commits(tmp_path / "r")
    for i in range(200):
        (repo.root / "n.txt").write_text(f"{i}\n")
        repo.add(["n.txt"])
        repo.commit(f"commit number {i} " + "x" * 200)
    proc = subprocess.Popen([*BGIT, "log"], cwd=repo.root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # like `bgit log | head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == ""
