"""bgit merge on real repositories cross-checked with git: conflicts, --continue, --abort,
fast-forwards, --no-bake and --strategy weights (real PEFT adapters on a tiny random Llama)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bgit import api
from bgit.cli.main import cli
from evaluate_helpers import (HELD_OUT_STIMS, TRAIN_STIMS, adapter_tensors, input_yml, make_adapter, make_base_model,
                              metrics_rows, rollout_rows, stim_id)

STIMS = {"alpha": TRAIN_STIMS + HELD_OUT_STIMS, "beta": ["one", "two", "three", "four", "five", "six"]}


def git(cwd, *args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check)


def run(cwd, monkeypatch, *args, code: int = 0):
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file in the work tree (.git left out)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return make_base_model(tmp_path_factory.mktemp("model") / "tiny")


def shared_config(base) -> str:
    data = yaml.safe_load(input_yml(base))
    del data["TARGET"]
    return yaml.safe_dump(data, sort_keys=False)


def fake_bake(root: Path, base, target: str, adapter: Path, message: str, epochs: int | None = None) -> str:
    """A bake commit of target ``target`` made without training (the adapter is random)."""
    from bgit.models import resolve_model
    from bgit.pipeline.records import write_jsonl

    stims = STIMS[target]
    text = input_yml(base, stims).replace("name: terse", f"name: {target}")
    if epochs is not None:
        text = text.replace("BAKE:\n", f"BAKE:\n  epochs: {epochs}\n")
    (root / "input.yml").write_text(text)
    record = {"bgit_bake": 1, "targets": [target],
              "base_model": {"name": str(base), "fingerprint": resolve_model(str(base)).fingerprint},
              "eval_stims": {target: [stim_id(s) for s in stims[-2:]]},
              "metrics": {"final_train_kl": 0.25, "final_eval_kl": 0.5}}
    (root / "bake.yml").write_text(yaml.safe_dump(record, sort_keys=False))
    write_jsonl(root / f"targets/{target}/stim.jsonl", [{"id": stim_id(s), "text": s} for s in stims])
    write_jsonl(root / f"targets/{target}/rollout.jsonl", rollout_rows(base, stims))
    write_jsonl(root / "metrics.jsonl", metrics_rows())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (root / "adapter").mkdir(exist_ok=True)
        (root / "adapter" / name).write_bytes((adapter / name).read_bytes())
    api.add(root, all=True)
    return api.commit(root, message).commit


@pytest.fixture(scope="module")
def branches(tmp_path_factory, base_model):
    """main: the shared config, then bake alpha; branch beta (from the config): bake beta."""
    tmp = tmp_path_factory.mktemp("merge")
    root = tmp / "repo"
    api.init(root, example=None)
    (root / "input.yml").write_text(shared_config(base_model))
    (root / "notes.txt").write_text("shared\n")
    api.add(root, all=True)
    api.commit(root, "the shared config")
    api.checkout(root, "HEAD", new_branch="beta")
    beta = fake_bake(root, base_model, "beta", make_adapter(base_model, tmp / "adapter-b", seed=2), "beta", epochs=5)
    api.checkout(root, "main")
    alpha = fake_bake(root, base_model, "alpha", make_adapter(base_model, tmp / "adapter-a", seed=1), "alpha")
    return {"root": root, "tmp": tmp, "alpha": alpha, "beta": beta, "base": base_model,
            "adapters": {"alpha": tmp / "adapter-a", "beta": tmp / "adapter-b"}}


def copy_repo(branches, tmp_path) -> Path:
    """A fresh copy of the two-branch repository for a test that changes it."""
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(branches["root"], root, symlinks=True)
    return root


def test_weights_strategy_cat_combines_exactly_and_evaluates_both_targets(branches, tmp_path, monkeypatch):
    from bgit.evaluate.lora import dense_delta, factors_from_tensors

    root = copy_repo(branches, tmp_path)
    out = json.loads(run(root, monkeypatch, "merge", "beta", "--strategy", "weights", "--combination", "cat",
                         "--weights", "0.7,0.3", "--json").stdout)
    assert out["kind"] == "merged" and out["strategy"] == "weights" and out["phases"] == []
    assert git(root, "rev-list", "--parents", "-n", "1", "HEAD").stdout.split()[1:] == [branches["alpha"],
                                                                                         branches["beta"]]
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["merge"] == {"strategy": "weights", "combination": "cat", "weights": [0.7, 0.3], "density": None,
                               "seed": 0, "ours": branches["alpha"], "theirs": branches["beta"],
                               "base": git(root, "merge-base", "HEAD^1", "HEAD^2").stdout.strip()}
    assert record["targets"] == ["alpha", "beta"] and set(record["eval_stims"]) == {"alpha", "beta"}
    assert not (root / "metrics.jsonl").exists()

    merged, config = adapter_tensors(root / "adapter")
    assert config["r"] == 8  # cat: ranks add up
    fm, fa, fb = (factors_from_tensors(merged, config),
                  factors_from_tensors(*adapter_tensors(branches["adapters"]["alpha"])),
                  factors_from_tensors(*adapter_tensors(branches["adapters"]["beta"])))
    assert set(fm) == set(fa) == set(fb)
    for module in fm:
        expected = 0.7 * dense_delta(fa[module]) + 0.3 * dense_delta(fb[module])
        assert (dense_delta(fm[module]) - expected).abs().max() < 1e-6 * max(1.0, float(expected.abs().max()))

    assert set(out["eval"]["targets"]) == {"alpha", "beta"}  # the eval note of the merge
    evaluated = json.loads(run(root, monkeypatch, "eval", "--json", "--no-save").stdout)
    assert {t: evaluated["targets"][t]["stims"] for t in ("alpha", "beta")} == {"alpha": 2, "beta": 2}
    assert all(evaluated["targets"][t]["closure"] is not None for t in ("alpha", "beta"))
    assert yaml.safe_load((root / "input.yml").read_text())["TARGETS"][1]["name"] == "beta"


def test_weights_strategy_dare_ties_is_seeded_and_checked_before_it_starts(branches, tmp_path, monkeypatch):
    root = copy_repo(branches, tmp_path)
    bad = run(root, monkeypatch, "merge", "beta", "--strategy", "weights", "--density", "0.3", code=1)
    assert bad.output == "Error: --density applies to ties and dare_ties, not to linear\n"
    assert git(root, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode != 0  # nothing started

    args = ["merge", "beta", "--strategy", "weights", "--combination", "dare_ties", "--density", "0.5", "--seed", "3"]
    run(root, monkeypatch, *args)
    first = snapshot(root)["adapter/adapter_model.safetensors"]
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert (record["merge"]["combination"], record["merge"]["density"], record["merge"]["seed"]) == ("dare_ties", 0.5, 3)
    assert adapter_tensors(root / "adapter")[1]["r"] == 4
    run(root, monkeypatch, "reset", "--hard", "HEAD~1")
    run(root, monkeypatch, *args)
    assert snapshot(root)["adapter/adapter_model.safetensors"] == first  # same seed, same adapter


def test_no_bake_merge_commits_the_merged_config_without_an_adapter(branches, tmp_path, monkeypatch):
    root = copy_repo(branches, tmp_path)
    run(root, monkeypatch, "merge", "beta", "--no-bake")
    files = set(git(root, "ls-tree", "-r", "--name-only", "HEAD").stdout.split())
    assert {"input.yml", "notes.txt", "targets/alpha/rollout.jsonl", "targets/beta/rollout.jsonl"} <= files
    assert not any(f.startswith("adapter/") or f in ("bake.yml", "metrics.jsonl") for f in files)
    assert not (root / "adapter").exists() and not (root / "bake.yml").exists()
    config = yaml.safe_load((root / "input.yml").read_text())
    assert [t["name"] for t in config["TARGETS"]] == ["alpha", "beta"]
    assert config["BAKE"]["epochs"] == 5 and config["BAKE"]["name"] == "alpha"  # theirs' change; ours' name
    assert api.validate(root / "input.yml").ok
    assert run(root, monkeypatch, "eval", code=1).output == "Error: HEAD is not a bake commit: it has no adapter/adapter_model.safetensors\n"
    assert api.status(root).clean


def _resolve_markers(path: Path, keep: str) -> None:
    """Keep one side of every conflict block ('ours' or 'theirs')."""
    pattern = re.compile(r"<<<<<<< [^\n]*\n(.*?)=======\n(.*?)>>>>>>> [^\n]*\n", re.S)
    path.write_text(pattern.sub(lambda m: m.group(1 if keep == "ours" else 2), path.read_text()))


def test_conflict_abort_restores_exactly_and_continue_finishes(branches, tmp_path, monkeypatch):
    root = copy_repo(branches, tmp_path)
    run(root, monkeypatch, "checkout", "-b", "gamma", "beta")
    text = (root / "input.yml").read_text().replace("epochs: 5", "epochs: 7")
    (root / "input.yml").write_text(text)
    (root / "notes.txt").write_text("gamma\n")
    (root / "gamma.txt").write_text("a file only gamma has\n")
    api.add(root, all=True)
    api.commit(root, "gamma: 7 epochs")
    run(root, monkeypatch, "checkout", "beta")
    (root / "notes.txt").write_text("beta\n")
    (root / "input.yml").write_text((root / "input.yml").read_text().replace("epochs: 5", "epochs: 6"))
    api.add(root, all=True)
    ours = api.commit(root, "beta: 6 epochs").commit
    (root / "scratch.local").write_text("untracked, must survive\n")
    before, status_before = snapshot(root), git(root, "status", "--porcelain").stdout

    conflict = run(root, monkeypatch, "merge", "gamma", "--no-bake", code=1)
    assert conflict.output.splitlines() == [
        "CONFLICT (content): Merge conflict in input.yml (keys: BAKE.epochs)",
        "CONFLICT (content): Merge conflict in notes.txt",
        "Automatic merge failed; fix conflicts and then run 'bgit merge --continue' (or 'bgit merge --abort')."]
    assert git(root, "rev-parse", "MERGE_HEAD").stdout.strip() == git(root, "rev-parse", "gamma").stdout.strip()
    porcelain = git(root, "status", "--porcelain").stdout.splitlines()
    assert "UU input.yml" in porcelain and "UU notes.txt" in porcelain
    assert "You have unmerged paths." in git(root, "status").stdout
    assert "<<<<<<< HEAD\n  epochs: 6\n=======\n  epochs: 7\n>>>>>>> gamma\n" in (root / "input.yml").read_text()
    assert (root / "notes.txt").read_text() == "<<<<<<< HEAD\nbeta\n=======\ngamma\n>>>>>>> gamma\n"
    assert (root / "gamma.txt").is_file() and not (root / "adapter").exists()  # merged in; --no-bake: no adapter
    in_progress = ("Error: a merge is in progress: finish it with 'bgit merge --continue' or undo it with "
                   "'bgit merge --abort'\n")
    for command in (["commit", "-m", "x"], ["bake"], ["checkout", "main"], ["merge", "main"], ["revert", "HEAD"]):
        assert run(root, monkeypatch, *command, code=1).output == in_progress, command
    line = (root / "input.yml").read_text().splitlines().index("<<<<<<< HEAD") + 1
    assert run(root, monkeypatch, "merge", "--continue", code=1).output == (
        f"Error: input.yml:{line}: conflict markers are still there: edit the file, then 'bgit merge --continue' "
        "(or 'bgit merge --abort')\n")

    run(root, monkeypatch, "merge", "--abort")
    assert snapshot(root) == before and git(root, "status", "--porcelain").stdout == status_before
    assert git(root, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode != 0
    assert run(root, monkeypatch, "merge", "--abort", code=1).output == (
        "Error: there is no merge in progress (MERGE_HEAD missing)\n")

    run(root, monkeypatch, "merge", "gamma", "--no-bake", code=1)
    _resolve_markers(root / "input.yml", "theirs")
    assert run(root, monkeypatch, "merge", "--continue", code=1).output == (
        "Error: unmerged paths: notes.txt (resolve them and 'bgit add' them, or 'bgit merge --abort')\n")
    (root / "notes.txt").write_text("beta and gamma\n")
    run(root, monkeypatch, "add", "notes.txt")
    done = json.loads(run(root, monkeypatch, "merge", "--continue", "--json").output)
    assert done["kind"] == "merged" and done["strategy"] == "none" and done["phases"] == []
    parents = git(root, "rev-list", "--parents", "-n", "1", "HEAD").stdout.split()[1:]
    assert parents == [ours, git(root, "rev-parse", "gamma").stdout.strip()]
    assert yaml.safe_load(git(root, "show", "HEAD:input.yml").stdout)["BAKE"]["epochs"] == 7
    assert git(root, "show", "HEAD:notes.txt").stdout == "beta and gamma\n"
    assert git(root, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).returncode != 0


def test_fast_forward_and_up_to_date(branches, tmp_path, monkeypatch):
    root = copy_repo(branches, tmp_path)
    run(root, monkeypatch, "checkout", "-b", "behind", "main~1")
    assert run(root, monkeypatch, "merge", "main").output == f"Fast-forward to {branches['alpha'][:8]}\n"
    assert git(root, "rev-parse", "HEAD").stdout.strip() == branches["alpha"]
    assert git(root, "reflog", "-1", "--format=%gs", "behind").stdout.strip() == "merge main: Fast-forward"
    assert snapshot(root)["adapter/adapter_model.safetensors"] == hashlib.sha256(
        (branches["adapters"]["alpha"] / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert run(root, monkeypatch, "merge", "main~1").output == "Already up to date.\n"
    assert api.status(root).clean
