"""bgit reset / revert / rm on real bake commits (real PEFT adapters), cross-checked with git."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgit import api
from bgit.cli.main import cli
from evaluate_helpers import build_history

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def git(cwd, *args, check=True) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check).stdout.strip()


def run(cwd, monkeypatch, *args, code: int = 0):
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def adapter_digests(directory: Path) -> dict[str, str]:
    return {name: sha256(directory / name) for name in ADAPTER_FILES}


def index_matches(root, ref: str) -> bool:
    """git's own view: the index holds exactly ``ref``'s tree."""
    return git(root, "write-tree") == git(root, "rev-parse", f"{ref}^{{tree}}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    repo, base_dir, adapters, shas = build_history(tmp_path_factory.mktemp("history"))
    return repo.root, adapters, shas


@pytest.fixture
def history(built, tmp_path):
    """A fresh copy of the two-bake repository (the base model and adapters are shared)."""
    root, adapters, shas = built
    shutil.copytree(root, tmp_path / "repo", symlinks=True)
    return tmp_path / "repo", adapters, shas


def test_reset_hard_round_trips_adapters_byte_identically(history, monkeypatch):
    root, adapters, shas = history
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["b"])

    out = run(root, monkeypatch, "reset", "--hard", "HEAD~1").output
    assert out == f"HEAD is now at {shas['a'][:7]} bake a\n"
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["a"])
    assert git(root, "rev-parse", "HEAD") == shas["a"] and git(root, "rev-parse", "ORIG_HEAD") == shas["b"]
    assert git(root, "reflog", "-1", "--format=%gs", "main") == "reset: moving to HEAD~1"
    assert git(root, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert index_matches(root, "HEAD") and api.status(root).clean

    run(root, monkeypatch, "reset", "--hard", shas["b"])
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["b"])
    assert git(root, "rev-parse", "HEAD") == shas["b"] and index_matches(root, "HEAD") and api.status(root).clean
    assert api.fsck(root).ok


def test_reset_soft_and_mixed_keep_the_work_tree(history, monkeypatch):
    root, adapters, shas = history
    run(root, monkeypatch, "reset", "--soft", "HEAD~1")
    assert git(root, "rev-parse", "HEAD") == shas["a"] and index_matches(root, shas["b"])
    status = api.status(root)
    assert "adapter/adapter_model.safetensors" in {c.path for c in status.staged} and not status.modified
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["b"])

    run(root, monkeypatch, "reset")  # --mixed HEAD: the index back to HEAD, the files stay
    assert index_matches(root, "HEAD")
    status = api.status(root)
    assert not status.staged and "adapter/adapter_model.safetensors" in {c.path for c in status.modified}
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["b"])

    (root / "input.yml").write_text("staged: version\n")
    run(root, monkeypatch, "add", "input.yml")
    (root / "input.yml").write_text("work tree: version\n")
    refused = run(root, monkeypatch, "reset", "--mixed", "HEAD", code=1)
    assert refused.output == ("Error: reset would overwrite or lose uncommitted changes: input.yml (staged versions "
                              "that are nowhere else; commit them, or use --hard to discard them)\n")
    run(root, monkeypatch, "reset", "--hard")
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["a"]) and api.status(root).clean


def test_revert_brings_the_previous_bake_back_and_revert_of_revert_restores(history, monkeypatch):
    root, adapters, shas = history
    run(root, monkeypatch, "revert", "HEAD")
    assert git(root, "log", "-1", "--format=%s%n%n%b") == f'Revert "bake b"\n\nThis reverts commit {shas["b"]}.'
    assert git(root, "rev-parse", "HEAD^") == shas["b"]
    assert git(root, "rev-parse", "HEAD^{tree}") == git(root, "rev-parse", f"{shas['a']}^{{tree}}")
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["a"])
    assert index_matches(root, "HEAD") and api.status(root).clean

    result = api.revert(root, "HEAD")
    assert result.reverted == git(root, "rev-parse", "HEAD^")
    assert git(root, "rev-parse", "HEAD^{tree}") == git(root, "rev-parse", f"{shas['b']}^{{tree}}")
    assert adapter_digests(root / "adapter") == adapter_digests(adapters["b"])

    before = git(root, "rev-parse", "HEAD")
    refused = run(root, monkeypatch, "revert", shas["a"], code=1).output
    # bake a is the first commit: undoing it deletes its files, which bake b changed since (all
    # but adapter_config.json, which b kept as it was: that one alone would be deleted cleanly)
    assert refused == (f"Error: cannot revert {shas['a']}: later commits changed adapter/adapter_model.safetensors, "
                       "bake.yml, input.yml (keys TARGET, BAKE), targets/terse/rollout.jsonl, "
                       "targets/terse/stim.jsonl too; nothing was changed (revert those commits first, or use "
                       "'bgit reset')\n")
    assert git(root, "rev-parse", "HEAD") == before and api.status(root).clean


def test_revert_merges_input_yml_key_by_key(history, monkeypatch):
    root, _, _ = history
    text = (root / "input.yml").read_text()
    (root / "input.yml").write_text(text.replace("learning_rate: 5e-4", "learning_rate: 1e-2"))
    changed_lr = api.add(root, ["input.yml"]) and api.commit(root, "lr 1e-2").commit
    (root / "input.yml").write_text((root / "input.yml").read_text().replace("  name: terse\n  optimizer:",
                                                                             "  name: terse\n  epochs: 9\n  optimizer:"))
    api.add(root, ["input.yml"])
    api.commit(root, "9 epochs")
    run(root, monkeypatch, "revert", changed_lr)
    reverted = (root / "input.yml").read_text()
    assert "learning_rate: 5e-4" in reverted and "epochs: 9" in reverted


def test_rm_refuses_to_lose_changes_and_keeps_payloads(history, monkeypatch):
    root, _, _ = history
    assert run(root, monkeypatch, "rm", "adapter", code=1).output == (
        "Error: not removing 'adapter' recursively without -r\n")
    assert run(root, monkeypatch, "rm", "nope", code=1).output == "Error: pathspec 'nope' did not match any files\n"
    (root / "input.yml").write_text("changed\n")
    assert run(root, monkeypatch, "rm", "input.yml", code=1).output == (
        "Error: 'input.yml' has local modifications (use --cached to keep the file, or -f to force removal)\n")
    run(root, monkeypatch, "rm", "--cached", "input.yml")
    assert (root / "input.yml").read_text() == "changed\n"
    assert git(root, "status", "--porcelain", "input.yml").splitlines() == ["D  input.yml", "?? input.yml"]

    out = run(root, monkeypatch, "rm", "-r", "adapter").output
    assert out == "rm 'adapter/adapter_config.json'\nrm 'adapter/adapter_model.safetensors'\n"
    assert not (root / "adapter").exists()
    assert git(root, "diff", "--cached", "--name-status", "--", "adapter").splitlines() == [
        "D\tadapter/adapter_config.json", "D\tadapter/adapter_model.safetensors"]
    api.commit(root, "drop the adapter")
    assert "adapter/adapter_model.safetensors" not in git(root, "ls-tree", "-r", "--name-only", "HEAD")
    assert api.fsck(root).ok
    run(root, monkeypatch, "reset", "--hard", "HEAD~1")  # the payload is still in the store
    assert (root / "adapter" / "adapter_model.safetensors").is_file() and api.status(root).clean
    assert (root / "input.yml").read_text() != "changed\n"  # as git: --hard overwrites untracked files in the way
