"""git behaviours bgit owes its users: diff against nothing and against the work tree, checkout of
a remote's branch in a fresh clone (DWIM, with upstream), log --graph --all across branches."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from click.testing import CliRunner

from bgit import api
from bgit.cli.main import cli
from evaluate_helpers import build_history
from repo_helpers import sha256, write_adapter

ADAPTER = "adapter/adapter_model.safetensors"


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def run(cwd, monkeypatch, *args, code: int = 0):
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_diff_of_the_first_commit_and_of_the_work_tree(tmp_path, monkeypatch):
    repo, base_dir, adapters, shas = build_history(tmp_path)
    root = repo.root
    run(root, monkeypatch, "reset", "--hard", "HEAD~1")       # HEAD is now the first commit

    first = json.loads(run(root, monkeypatch, "diff", "--json").output)
    assert first["a"] == {"ref": "(nothing)", "commit": None} and first["b"] == {"ref": "HEAD", "commit": shas["a"]}
    assert first["config"] and {c["change"] for c in first["config"]} == {"added"}
    assert [(d["target"], d["stims_a"], d["stims_b"]) for d in first["datasets"]] == [("terse", 0, 6)]
    total = first["weights"]["total"]
    assert total["norm_a"] == 0 and total["norm_b"] > 0 and total["changed"] == total["modules"] > 0
    assert run(root, monkeypatch, "diff").output.startswith(f"diff (nothing) .. HEAD ({shas['a'][:8]})\n")

    # uncommitted changes: no REF compares HEAD with the work tree, as git diff does
    (root / "input.yml").write_text((root / "input.yml").read_text().replace("learning_rate: 1e-3",
                                                                             "learning_rate: 2e-3"))
    (root / ADAPTER).write_bytes((adapters["b"] / "adapter_model.safetensors").read_bytes())
    worktree = json.loads(run(root, monkeypatch, "diff", "--json").output)
    assert worktree["a"] == {"ref": "HEAD", "commit": shas["a"]}
    assert worktree["b"] == {"ref": "work tree", "commit": None}
    assert [(c["key"], c["old"], c["new"]) for c in worktree["config"]] == [
        ("BAKE.optimizer.learning_rate", "1e-3", "2e-3")]
    changed = worktree["weights"]["total"]["changed"]
    assert 0 < changed < worktree["weights"]["total"]["modules"]  # only q_proj and layer 1's mlp differ
    assert run(root, monkeypatch, "diff").output.startswith(f"diff HEAD ({shas['a'][:8]}) .. work tree\n")

    # one REF: that commit against the work tree (bake b's adapter is what the work tree holds now)
    against_b = json.loads(run(root, monkeypatch, "diff", shas["b"], "--json").output)
    assert against_b["weights"]["total"]["changed"] == 0
    assert ("BAKE.optimizer.learning_rate", "5e-4", "2e-3") in [(c["key"], c["old"], c["new"])
                                                                 for c in against_b["config"]]
    both = json.loads(run(root, monkeypatch, "diff", shas["a"], shas["b"], "--json").output)
    assert both["weights"]["total"]["changed"] == changed


def test_checkout_of_a_remote_branch_in_a_fresh_clone_tracks_it(tmp_path, monkeypatch):
    a = api.init(tmp_path / "a").root
    write_adapter(a / ADAPTER, seed=1)
    api.add(a, all=True)
    api.commit(a, "main bake")
    api.checkout(a, "HEAD", new_branch="side")
    write_adapter(a / ADAPTER, seed=2)
    api.add(a, all=True)
    api.commit(a, "side bake")
    api.remote_add(a, "origin", str(tmp_path / "origin.git"))
    api.push(a, "origin", all_branches=True)
    api.checkout(a, "main")

    clone = api.clone(str(tmp_path / "origin.git"), tmp_path / "b", checkout=False).root
    assert not (clone / ADAPTER).exists()
    switched = run(clone, monkeypatch, "checkout", "main")
    assert switched.stderr == "branch 'main' set up to track 'origin/main'.\nSwitched to a new branch 'main'\n"
    assert git(clone, "rev-parse", "--abbrev-ref", "main@{upstream}").strip() == "origin/main"
    assert git(clone, "status", "-sb").splitlines()[0] == "## main...origin/main"
    assert sha256(clone / ADAPTER) == sha256(a / ADAPTER)

    side = json.loads(run(clone, monkeypatch, "checkout", "side", "--json").stdout)
    assert side["branch"] == "side" and side["tracking"] == "origin/side"
    assert git(clone, "rev-parse", "--abbrev-ref", "side@{upstream}").strip() == "origin/side"
    assert git(clone, "rev-parse", "HEAD") == git(a, "rev-parse", "side")
    run(clone, monkeypatch, "checkout", "main")        # a local branch now: a plain switch
    assert run(clone, monkeypatch, "checkout", "nope", code=1).output == "Error: unknown revision or path: 'nope'\n"


def _graph(lines: list[str]) -> tuple[list[str], list[str | None]]:
    """(graph drawing, abbreviated commit id or None) of each line of a --graph log."""
    shapes, shas = [], []
    for line in lines:
        start = next((i for i, c in enumerate(line) if c.isalnum()), len(line))
        shapes.append(line[:start].rstrip())
        shas.append(line[start:].split()[0] if start < len(line) else None)
    return shapes, shas


def _commit(root, name: str) -> None:
    time.sleep(1.05)  # distinct commit times: both tools then order the history the same way
    (root / f"{name}.txt").write_text(name)
    api.add(root, all=True)
    api.commit(root, name)


def test_log_graph_all_draws_every_branch_as_git_does(tmp_path, monkeypatch):
    root = api.init(tmp_path / "r", example=None).root
    assert run(root, monkeypatch, "log", "--json").output == "[]\n"
    assert run(root, monkeypatch, "log", "--all", "--json").output == "[]\n"
    _commit(root, "base")
    api.checkout(root, "HEAD", new_branch="side")
    _commit(root, "side-1")
    api.checkout(root, "main")
    _commit(root, "main-1")
    api.checkout(root, "HEAD", new_branch="exp")
    _commit(root, "exp-1")
    api.checkout(root, "side")
    _commit(root, "side-2")
    api.checkout(root, "main")
    api.merge(root, "side")
    _commit(root, "main-2")

    ours = run(root, monkeypatch, "log", "--graph", "--all", "--oneline").output.splitlines()
    theirs = git(root, "log", "--graph", "--date-order", "--branches", "--tags", "--remotes", "HEAD",
                 "--format=%h %s").splitlines()
    shape, shas = _graph(ours)
    assert (shape, shas) == _graph(theirs)
    assert len([s for s in shas if s]) == 7 and "exp-1" in "\n".join(ours)
    assert len(run(root, monkeypatch, "log", "--oneline").output.splitlines()) == 6  # exp is not on main
