"""Crash safety and the single-writer lock, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bgit.repo import Repository
from repo_helpers import REPO_ROOT, bgit_subprocess, git, new_repo, sha256, write_adapter

BIG = "adapter/adapter_model.safetensors"

WRITER = """
import sys
from pathlib import Path
from bgit.repo import Repository
repo = Repository.open(".")
print("ready", flush=True)
if sys.argv[1] == "commit":
    repo.add(all=True)
    repo.commit(sys.argv[2])
else:
    repo.commit_files({"%s": Path(sys.argv[3])}, sys.argv[2], replace_dirs=("adapter",))
""" % BIG


def _assert_consistent(repo_dir, previous: str, expected: dict[str, str]) -> str:
    """Both fscks clean; HEAD is the previous commit or a complete child of it."""
    fsck = git(repo_dir, "fsck", "--full", "--no-dangling", check=False)
    assert fsck.returncode == 0 and fsck.stdout == "", fsck.stdout + fsck.stderr
    repo = Repository.open(repo_dir)
    result = repo.fsck()
    assert result.ok, result.problems
    head = repo.head_commit()
    if str(head.id) != previous:
        assert [str(p) for p in head.parent_ids] == [previous]
        data = repo.read_file("HEAD", BIG)
        import hashlib

        assert hashlib.sha256(data).hexdigest() == expected[head.message.strip()]
    return str(head.id)


def test_sigkill_during_commit_leaves_a_valid_repository(tmp_path):
    repo = new_repo(tmp_path)
    write_adapter(repo.root / BIG, seed=0, rows=64)
    repo.add(all=True)
    head = repo.commit("small")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    expected: dict[str, str] = {}
    landed = 0
    # The first kill comes 5 ms into the write: on a fast machine a 15 MB commit can finish
    # within 50 ms, and then no kill would land mid-write.
    for i, delay in enumerate([0.005, 0.05, 0.4, 1.2, 1.8]):
        mode = "commit" if i % 2 == 0 else "commit_files"
        source = repo.root / BIG if mode == "commit" else tmp_path / f"staged-{i}.safetensors"
        write_adapter(source, seed=100 + i, rows=120_000)  # ~15 MB
        expected[f"big {i}"] = sha256(source)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, mode, f"big {i}", str(source)],
                                cwd=repo.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        new_head = _assert_consistent(repo.root, head, expected)
        landed += new_head != head
        head = new_head
    # the killed writers left no lock behind, and the work tree can be brought back
    write_adapter(repo.root / BIG, seed=7, rows=64)
    done = bgit_subprocess(repo.root, "add", "-A")
    assert done.returncode == 0, done.stderr
    assert bgit_subprocess(repo.root, "commit", "-m", "after the crashes").returncode == 0
    _assert_consistent(repo.root, head, {"after the crashes": sha256(repo.root / BIG)})
    # at least one kill hit a commit mid-write, else nothing above tested a crash
    assert landed < 5, "every commit finished before its SIGKILL"
    print(f"{landed} of 5 killed commits had landed")


def test_second_writer_is_refused_with_the_holder(tmp_path):
    repo = new_repo(tmp_path)
    repo.add(all=True)
    head = repo.commit("one")
    (repo.root / "notes.txt").write_text("hello\n")
    with repo.lock("bgit commit"):
        for args in (["commit", "-m", "two"], ["branch", "x"]):
            result = bgit_subprocess(repo.root, *args)
            assert result.returncode == 1 and result.stdout == ""
            assert result.stderr.startswith(f"Error: repository is locked by pid {os.getpid()} (bgit commit) since ")
            assert len(result.stderr.splitlines()) == 1
        # readers are not blocked
        assert bgit_subprocess(repo.root, "status", "--json").returncode == 0
    assert str(Repository.open(repo.root).head_commit().id) == head
    assert git(repo.root, "branch", "--list").stdout.split() == ["*", "main"]
    assert bgit_subprocess(repo.root, "add", "notes.txt").returncode == 0
    assert bgit_subprocess(repo.root, "commit", "-m", "two").returncode == 0
    assert git(repo.root, "fsck", "--full").returncode == 0
    assert git(repo.root, "log", "--format=%s").stdout.split() == ["two", "one"]
