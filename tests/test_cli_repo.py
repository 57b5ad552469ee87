"""The repository commands through click's CliRunner and through a real subprocess."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.cli.repo_cmds import COMMANDS
from bgit.repo import Repository
from repo_helpers import bgit_subprocess, git, sha256, write_adapter, write_jsonl

ADAPTER = "adapter/adapter_model.safetensors"


def run(*args: str, code: int = 0):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    if code == 0:
        assert result.exception is None
    return result


@pytest.fixture
def repo_dir(tmp_path, monkeypatch):
    run("init", str(tmp_path / "r"))
    monkeypatch.chdir(tmp_path / "r")
    return tmp_path / "r"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_command_has_summary_and_example(command):
    result = run(command.name, "--help")
    summary = command.get_short_help_str(limit=200)
    assert summary and not summary.endswith("...")
    assert f"Example: bgit {command.name}" in " ".join(result.output.split())


def test_workflow_init_add_commit_status_log_show(repo_dir):
    assert (repo_dir / "input.yml").exists()
    write_adapter(repo_dir / ADAPTER, seed=1)
    write_jsonl(repo_dir / "targets/t/stim.jsonl", 20)
    status = json.loads(run("status", "--json").output)
    example_data = "data/everyday_questions.jsonl"  # the Yoda example's stims, written by init
    assert status["head"] is None and set(status["untracked"]) == {"input.yml", example_data, ADAPTER,
                                                                  "targets/t/stim.jsonl"}
    run("add", "-A")
    assert "Changes to be committed:" in run("status").output
    out = run("commit", "-m", "first bake").output
    assert out.startswith("[main ") and out.rstrip().endswith("] first bake")
    assert run("status").output.endswith("nothing to commit, working tree clean\n")

    (repo_dir / "bake.yml").write_text("base_model: {name: tiny}\ntargets: [t]\nmetrics: {final_eval_kl: 0.25}\n")
    run("add", "bake.yml")
    run("commit", "-m", "second")
    oneline = run("log", "--oneline").output.splitlines()
    assert len(oneline) == 2 and oneline[0].endswith("second  [bake: base tiny, targets t, KL 0.25]")
    assert "(HEAD -> main)" in oneline[0]
    assert run("log", "--oneline", "--graph", "-n", "1").output.startswith("* ")
    entries = json.loads(run("log", "--json").output)
    assert [e["message"].strip() for e in entries] == ["second", "first bake"]
    assert entries[0]["bake"] == {"base_model": "tiny", "targets": ["t"], "final_kl": 0.25}
    assert git(repo_dir, "log", "--format=%s").stdout.split("\n")[:2] == ["second", "first bake"]

    shown = json.loads(run("show", "HEAD~1", "--json").output)
    files = {f["path"]: f for f in shown["files"]}
    assert files[ADAPTER]["kind"] == "safetensors" and files[ADAPTER]["tensors"] == 4
    assert files[ADAPTER]["size"] == (repo_dir / ADAPTER).stat().st_size
    assert files["input.yml"]["payload"] is False
    text = run("show").output
    assert "bake: base tiny, targets t, KL 0.25" in text and ADAPTER in text and "safetensors" in text


def test_branch_tag_checkout_fsck_gc(repo_dir):
    write_adapter(repo_dir / ADAPTER, seed=1)
    run("add", "-A")
    run("commit", "-m", "one")
    first = sha256(repo_dir / ADAPTER)
    run("checkout", "-b", "exp", "main")
    write_adapter(repo_dir / ADAPTER, seed=2)
    run("add", ADAPTER)
    run("commit", "-m", "two")
    run("tag", "v2")
    assert json.loads(run("tag", "--json").output)[0]["name"] == "v2"
    branches = json.loads(run("branch", "--json").output)
    assert [(b["name"], b["current"]) for b in branches] == [("exp", True), ("main", False)]
    result = run("branch", "-d", "exp", code=1)
    assert result.output == "Error: cannot delete branch 'exp': it is checked out\n"

    run("checkout", "main")
    assert sha256(repo_dir / ADAPTER) == first
    assert "* main" in run("branch").output
    run("checkout", "v2")
    assert git(repo_dir, "rev-parse", "HEAD").stdout == git(repo_dir, "rev-parse", "v2").stdout
    run("checkout", "main")
    run("tag", "-d", "v2")
    run("branch", "-d", "exp")
    assert run("fsck").output.startswith("ok: 3 manifests")  # HEAD's reflog still reaches "two"
    git(repo_dir, "reflog", "expire", "--expire-unreachable=now", "--all")
    assert run("fsck").output.startswith("ok: 2 manifests")  # the adapter and init's example dataset
    gc = json.loads(run("gc", "--grace", "0", "--json").output)
    assert gc["removed_objects"] > 0
    assert json.loads(run("fsck", "--json").output)["ok"] is True
    assert sha256(repo_dir / ADAPTER) == first


def test_bad_input_gets_one_line_errors(repo_dir, tmp_path):
    write_jsonl(repo_dir / "data.jsonl", 10)
    run("add", "-A")
    assert run("commit", "-m", "one").exit_code == 0
    assert run("commit", "-m", "again", code=1).output == "Error: nothing to commit (use 'bgit add' to stage changes)\n"
    assert run("log", "xyz", code=1).output == "Error: unknown revision or path: 'xyz'\n"
    assert run("show", "nope~3", code=1).output == "Error: unknown revision or path: 'nope~3'\n"
    assert run("add", "missing.txt", code=1).output == "Error: pathspec 'missing.txt' did not match any files\n"
    run("checkout", "-b", "other")
    (repo_dir / "data.jsonl").write_text('{"x": 1}\n')
    run("add", "data.jsonl")
    run("commit", "-m", "other data")
    run("checkout", "main")
    (repo_dir / "data.jsonl").write_text('{"dirty": true}\n')
    assert run("checkout", "other", code=1).output == (
        "Error: checkout would overwrite uncommitted changes: data.jsonl (commit them or use --force)\n")
    run("checkout", "other", "--force")
    assert (repo_dir / "data.jsonl").read_text() == '{"x": 1}\n'

    # a corrupted manifest: the store object a manifest names is replaced by garbage
    repo = Repository.open(repo_dir)
    manifest = repo.read_manifest("HEAD", "data.jsonl")
    victim = repo.store.object_path(sorted(manifest.object_ids())[0])
    os.chmod(victim, 0o644)
    victim.write_bytes(b"garbage" * 10)
    result = run("fsck", code=1)
    short = git(repo_dir, "rev-parse", "--short=8", "HEAD").stdout.strip()
    assert len(result.output.splitlines()) == 1 and f"needed by {short}:data.jsonl" in result.output
    (repo_dir / "data.jsonl").unlink()
    result = run("checkout", "HEAD", "--force", code=1)
    assert result.output.startswith("Error: corrupt object ") and len(result.output.splitlines()) == 1

    os.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    os.chdir(tmp_path / "elsewhere")
    assert run("status", code=1).output == (
        f"Error: not a bgit repository (or any of the parent directories): {tmp_path / 'elsewhere'}\n")


def test_subprocess_commit_without_identity_and_checkout(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    assert bgit_subprocess(tmp_path, "init", "r", env=env).returncode == 0
    repo_dir = tmp_path / "r"
    write_adapter(repo_dir / ADAPTER, seed=3)
    expected = sha256(repo_dir / ADAPTER)
    assert bgit_subprocess(repo_dir, "add", "-A", env=env).returncode == 0
    done = bgit_subprocess(repo_dir, "commit", "-m", "anonymous bake", env=env)
    assert done.returncode == 0, done.stderr
    assert git(repo_dir, "log", "-1", "--format=%an <%ae>").stdout.strip() == "bgit <bgit@localhost>"
    (repo_dir / ADAPTER).unlink()
    done = bgit_subprocess(repo_dir, "checkout", "main", "--force", env=env)
    assert done.returncode == 0 and sha256(repo_dir / ADAPTER) == expected
    bad = bgit_subprocess(repo_dir, "log", "xyz", env=env)
    assert (bad.returncode, bad.stderr, bad.stdout) == (1, "Error: unknown revision or path: 'xyz'\n", "")


def test_add_paths_relative_to_the_current_directory(repo_dir, monkeypatch):
    write_jsonl(repo_dir / "targets/t/stim.jsonl", 5)
    (repo_dir / "targets/t/notes.txt").write_text("n\n")
    monkeypatch.chdir(repo_dir / "targets")
    run("add", "t/stim.jsonl")
    staged = json.loads(run("status", "--json").output)["staged"]
    assert staged == [{"path": "targets/t/stim.jsonl", "change": "added"}]
    assert run("add", "../../outside", code=1).output.startswith("Error: path is outside the repository: ")


def test_a_stale_git_lock_file_is_a_one_line_error(repo_dir):
    (repo_dir / ".git" / "index.lock").write_text("")
    result = run("add", "input.yml", code=1)
    assert result.output.startswith("Error: git failed: the index is locked")
    assert result.output.endswith(f"(if no other git process is running, remove {repo_dir}/.git/index.lock)\n")
    assert len(result.output.splitlines()) == 1
    (repo_dir / ".git" / "index.lock").unlink()
    run("add", "input.yml")
