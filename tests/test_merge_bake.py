"""Merging real bakes (a tiny random Llama through the real pipeline): the union of both sides'
targets is baked with stim and rollout from the phase cache (or, in a clone, from the merged
commits), so only training runs; the merged bake evaluates both targets' closures."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from click.testing import CliRunner

from bgit import api
from bgit.cli.main import cli
from evaluate_helpers import make_base_model

CAPS = ["hi there", "why is it so?", "the sky", "tea or coffee", "a song", "the sea"]
FRENCH = ["good morning", "a cat", "the river", "bread please", "how far?", "the moon"]


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def run(cwd, monkeypatch, *args, code: int = 0):
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, (result.output, result.stderr, result.exception)
    return result


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return make_base_model(tmp_path_factory.mktemp("model") / "tiny")


def config(base, target: str | None = None) -> str:
    data = {"MODEL": {"base": str(base)},
            "PROMPT": {"teacher": {"messages": [{"role": "system", "content": "Be helpful."}]}},
            "BAKE": {"name": "bake", "epochs": 2, "micro_batch_size": 2, "optimizer": {"learning_rate": 5e-3},
                     "data": {"train_eval_split": 0.67}, "model": {"baked_adapter_config": {"r": 4}}}}
    if target is not None:
        system, stims = {"caps": ("Answer in capitals.", CAPS), "french": ("Answer in French.", FRENCH)}[target]
        data["TARGET"] = {"name": target, "max_tokens": 8, "num_traj_per_stimulus": 1, "augment": 0,
                          "prompt": {"teacher": {"messages": [{"role": "system", "content": system}]}},
                          "generators": [{"type": "hardcoded", "stims": stims}]}
        data["BAKE"]["name"] = target
    return yaml.safe_dump(data, sort_keys=False)


def two_baked_branches(root, base):
    """main: config only, then caps baked; branch french (from the config commit): french baked."""
    api.init(root, example=None)
    (root / "input.yml").write_text(config(base))
    api.add(root, all=True)
    api.commit(root, "the shared config")
    api.checkout(root, "HEAD", new_branch="french")
    (root / "input.yml").write_text(config(base, "french"))
    french = api.bake(root, message="french")
    api.checkout(root, "main")
    (root / "input.yml").write_text(config(base, "caps"))
    caps = api.bake(root, message="caps")
    return caps, french


def phase_states(output: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in output.splitlines() if line.split()
            and line.split()[0].startswith(("stim[", "rollout[", "train"))}


def test_merged_bake_trains_only_and_evaluates_both_targets(tmp_path, base_model, monkeypatch):
    root = tmp_path / "repo"
    caps, french = two_baked_branches(root, base_model)

    result = run(root, monkeypatch, "merge", "french")
    assert phase_states(result.stdout) == {"stim[caps]": "cached", "stim[french]": "cached",
                                           "rollout[caps]": "cached", "rollout[french]": "cached", "train": "ran"}
    assert "Merge made by the 'train' strategy" in result.stdout
    assert "[caps] closure" in result.stdout and "[french] closure" in result.stdout

    head, *parents = git(root, "rev-list", "--parents", "-n", "1", "HEAD").split()
    assert parents == [caps.commit, french.commit]
    assert git(root, "log", "-1", "--format=%s") == "Merge branch 'french'\n"
    assert git(root, "status", "--porcelain", "--untracked-files=no", "--", "input.yml", "bake.yml") == ""

    record = yaml.safe_load((root / "bake.yml").read_text())
    sides = [yaml.safe_load(git(root, "show", f"{c}:bake.yml")) for c in (caps.commit, french.commit)]
    assert record["targets"] == ["caps", "french"]
    assert record["merge"] == {"strategy": "train", "ours": caps.commit, "theirs": french.commit,
                               "base": git(root, "rev-parse", "HEAD~1~1").strip()}
    for side, name in zip(sides, ("caps", "french")):  # the same phase keys: each target's own inputs
        assert record["phase_keys"]["stim"][name] == side["phase_keys"]["stim"][name]
        assert record["phase_keys"]["rollout"][name] == side["phase_keys"]["rollout"][name]
        assert record["eval_stims"][name] == side["eval_stims"][name] != []
    assert record["phase_keys"]["train"] not in (sides[0]["phase_keys"]["train"], sides[1]["phase_keys"]["train"])
    assert sorted(record["cached"]) == ["rollout[caps]", "rollout[french]", "stim[caps]", "stim[french]"]

    merged_config = yaml.safe_load((root / "input.yml").read_text())
    assert [t["name"] for t in merged_config["TARGETS"]] == ["caps", "french"]
    evaluated = json.loads(run(root, monkeypatch, "eval", "--json", "--no-save").stdout)
    assert set(evaluated["targets"]) == {"caps", "french"}
    assert all(evaluated["targets"][t]["closure"] is not None and evaluated["targets"][t]["stims"] >= 1
               for t in ("caps", "french"))
    assert evaluated["source"] == "eval_stims"


def test_pull_merge_in_a_clone_takes_the_phases_from_the_commits(tmp_path, base_model, monkeypatch):
    origin = tmp_path / "origin.git"
    a = tmp_path / "a"
    api.init(a, example=None)
    (a / "input.yml").write_text(config(base_model))
    api.add(a, all=True)
    api.commit(a, "the shared config")
    api.remote_add(a, "origin", str(origin))
    api.push(a, "origin")
    b = api.clone(str(origin), tmp_path / "b").root

    (a / "input.yml").write_text(config(base_model, "caps"))
    caps = api.bake(a, message="caps")
    api.push(a, "origin")
    (b / "input.yml").write_text(config(base_model, "french"))
    french = api.bake(b, message="french")

    refused = run(b, monkeypatch, "pull", code=1)
    assert refused.stderr == ("Error: branch 'main' has diverged from 'origin/main' (1 local, 1 remote commits); "
                              "merge it with 'bgit merge origin/main' (or 'bgit pull --merge')\n")
    merged = run(b, monkeypatch, "pull", "--merge")
    assert "taken from a merged commit" in merged.stderr
    assert phase_states(merged.stdout) == {"stim[french]": "cached", "stim[caps]": "cached",
                                           "rollout[french]": "cached", "rollout[caps]": "cached", "train": "ran"}
    parents = git(b, "rev-list", "--parents", "-n", "1", "HEAD").split()[1:]
    assert parents == [french.commit, caps.commit]
    assert git(b, "log", "-1", "--format=%s") == "Merge remote-tracking branch 'origin/main'\n"
    record = yaml.safe_load((b / "bake.yml").read_text())
    assert record["targets"] == ["french", "caps"]
    assert record["phase_keys"]["rollout"]["caps"] == caps.record.phase_keys.rollout["caps"]
    repo = api.open_repo(b)
    needed = set().union(*(repo.read_manifest("HEAD", path).object_ids() for path in repo.tree_entries("HEAD")
                          if repo.read_manifest("HEAD", path) is not None))
    assert needed and all(repo.store.has(oid) for oid in needed)  # a lazy clone: HEAD's payloads are here
    subprocess.run(["git", "fsck", "--no-progress"], cwd=b, check=True, capture_output=True)
