"""`bgit bake` mechanics on a tiny random model: phase cache, resume after a kill, sequential
baking, hooks. Real repositories, real subprocesses, real PEFT adapters."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from evaluate_helpers import make_base_model

STIMS = ["hi there", "why is it so?", "the sky", "tea or coffee", "a song", "the sea", "ok then", "go on"]


def write_config(root: Path, base: Path, *, system="Answer in capitals.", epochs=2, lr=5e-3, parent="base",
                 split=0.75, max_tokens=12):
    config = {
        "MODEL": {"base": str(base)},
        "PROMPT": {"teacher": {"messages": [{"role": "system", "content": system}]}},
        "TARGET": {"name": "caps", "max_tokens": max_tokens, "num_traj_per_stimulus": 1, "augment": 0,
                   "generators": [{"type": "hardcoded", "stims": STIMS}]},
        "BAKE": {"epochs": epochs, "micro_batch_size": 2, "parent": parent,
                 "optimizer": {"learning_rate": lr}, "data": {"train_eval_split": split},
                 "model": {"baked_adapter_config": {"r": 4}}},
    }
    (root / "input.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def bgit(cwd, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"bgit {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    return make_base_model(tmp_path_factory.mktemp("model") / "tiny")


def new_repo(tmp_path, base_model, name="repo", **config):
    root = tmp_path / name
    bgit(tmp_path, "init", str(root))
    write_config(root, base_model, **config)
    return root


def test_bake_commits_then_caches_every_phase(tmp_path, base_model):
    root = new_repo(tmp_path, base_model)
    first = bgit(root, "bake", "-m", "caps", "--json")
    report = json.loads(first.stdout)
    assert [p["cached"] for p in report["phases"]] == [False, False, False]
    assert git(root, "log", "--format=%s").split("\n")[0] == "caps"
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["eval_stims"]["caps"], "held-out stims are recorded"
    assert record["metrics"]["eval_closure"] is not None

    refused = bgit(root, "bake", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: this config is already baked at HEAD")

    again = json.loads(bgit(root, "bake", "--force", "-m", "again", "--json").stdout)
    assert [p["cached"] for p in again["phases"]] == [True, True, True]
    # the same adapter: no new payload bytes, identical blob in both commits
    assert git(root, "rev-parse", "HEAD:adapter/adapter_model.safetensors") == \
        git(root, "rev-parse", "HEAD~1:adapter/adapter_model.safetensors")


def test_changing_the_teacher_prompt_reruns_rollout_but_not_stim(tmp_path, base_model):
    root = new_repo(tmp_path, base_model)
    bgit(root, "bake")
    write_config(root, base_model, system="Answer in French.")
    states = {line.split()[0]: line.split()[1] for line in bgit(root, "bake", "--dry-run").stdout.splitlines()}
    # hardcoded stims do not read the teacher prompt (model-written ones do): they stay cached
    assert states == {"stim[caps]": "cached", "rollout[caps]": "would", "train": "would"}
    write_config(root, base_model, lr=1e-2)
    states = {line.split()[0]: line.split()[1] for line in bgit(root, "bake", "--dry-run").stdout.splitlines()}
    assert states == {"stim[caps]": "cached", "rollout[caps]": "cached", "train": "would"}


def test_a_bake_killed_during_training_resumes_and_matches_an_uninterrupted_one(tmp_path, base_model):
    epochs = 40
    reference = new_repo(tmp_path, base_model, "reference", epochs=epochs)
    bgit(reference, "bake")
    expected = yaml.safe_load((reference / "bake.yml").read_text())["metrics"]

    root = new_repo(tmp_path, base_model, "killed", epochs=epochs)
    process = subprocess.Popen([sys.executable, "-m", "bgit", "bake"], cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    phases = root / ".git" / "bgit" / "phases" / "train"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(phases.glob("*.work/checkpoints/step-*")):
        assert process.poll() is None, "the bake finished before a checkpoint could be interrupted"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=root, capture_output=True).returncode != 0
    assert bgit(root, "fsck").returncode == 0
    plan = bgit(root, "bake", "--dry-run").stdout
    assert "stim[caps]" in plan and plan.count("cached") == 2  # stim and rollout survived the kill

    bgit(root, "bake")
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["train_resumed_from_epoch"] >= 1
    assert record["metrics"]["final_train_kl"] == pytest.approx(expected["final_train_kl"], abs=1e-5)
    assert record["metrics"]["final_eval_kl"] == pytest.approx(expected["final_eval_kl"], abs=1e-5)


def test_sequential_bake_adapter_equals_the_whole_chain(tmp_path, base_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root = new_repo(tmp_path, base_model)
    bgit(root, "bake", "-m", "one")
    write_config(root, base_model, system="Answer in French.", parent="head")
    bgit(root, "bake", "-m", "two")
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["parent"]["mode"] == "head" and record["parent"]["commit"] == git(root, "rev-parse", "HEAD~1").strip()

    first = tmp_path / "first"
    bgit(root, "checkout", "HEAD~1", "--force")  # materialises bake one's adapter from the store
    shutil.copytree(root / "adapter", first)
    bgit(root, "checkout", "main", "--force")

    second_stage = Path(root / ".git/bgit/phases/train") / record["phase_keys"]["train"] / "adapter"
    chained_config = json.loads((root / "adapter" / "adapter_config.json").read_text())
    assert chained_config["r"] == 8  # 4 + 4: rank concatenation

    ids = torch.tensor([[5, 17, 40, 99, 3, 250, 7]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(base_model, torch_dtype=torch.float32).eval()
        chained = PeftModel.from_pretrained(base, str(root / "adapter")).eval()(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(base_model, torch_dtype=torch.float32).eval()
        parent = PeftModel.from_pretrained(base, str(first)).merge_and_unload().eval()
        stepwise = PeftModel.from_pretrained(parent, str(second_stage)).eval()(input_ids=ids).logits
    assert torch.allclose(chained, stepwise, atol=1e-5), (chained - stepwise).abs().max()


def test_post_bake_gate_blocks_the_commit(tmp_path, base_model):
    root = new_repo(tmp_path, base_model)
    bgit(root, "hooks", "enable", "post-bake")
    env = {**os.environ, "BGIT_MIN_CLOSURE": "1.5"}  # no bake can reach it
    result = subprocess.run([sys.executable, "-m", "bgit", "bake"], cwd=root, capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: post-bake hook failed (exit 1)")
    assert subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=root, capture_output=True).returncode != 0


def test_stim_key_reads_the_teacher_prompt_only_for_model_written_stims(tmp_path, base_model):
    from bgit.config import parse_config
    from bgit.pipeline.bake import Baker
    from bgit.repo import Repository

    repo = Repository.init(tmp_path / "keys", example={})

    def key(system, generator):
        text = yaml.safe_dump({"MODEL": {"base": str(base_model)},
                               "PROMPT": {"teacher": {"messages": [{"role": "system", "content": system}]}},
                               "TARGET": {"name": "t", "generators": [generator]}})
        config = parse_config(text, str(tmp_path / "input.yml"))
        return Baker(repo, config).runner.stim_key(config.targets[0]).key

    hardcoded = {"type": "hardcoded", "stims": ["a", "b"]}
    written = {"type": "oneshot_qs", "numq": 2}
    assert key("Be brief.", hardcoded) == key("Be loud.", hardcoded)
    assert key("Be brief.", written) != key("Be loud.", written)


def test_stim_and_rollout_commands_run_once_then_show_the_cache(tmp_path, base_model):
    root = new_repo(tmp_path, base_model)
    first = bgit(root, "stim", "--json")
    (report,) = json.loads(first.stdout)
    assert report["target"] == "caps" and report["count"] == len(STIMS)
    assert [row["text"] for row in report["rows"]] == STIMS
    counted = bgit(root, "stim", "--count")
    assert counted.stdout == f"caps: {len(STIMS)} rows\n"
    assert "stim[caps] cached, nothing generated" in counted.stderr

    (rollouts,) = json.loads(bgit(root, "rollout", "--json", "--limit", "2").stdout)
    assert rollouts["count"] == len(STIMS) and len(rollouts["rows"]) == 2
    assert all(row["tokens"] >= 1 for row in rollouts["rows"])
    again = bgit(root, "rollout", "--limit", "1")
    assert "rollout[caps] cached, nothing generated" in again.stderr
    assert again.stdout.startswith(f"caps: {len(STIMS)} rows\n")

    unknown = bgit(root, "stim", "--target", "nope", check=False)
    assert (unknown.returncode, unknown.stderr) == (1, "Error: unknown target 'nope' (targets: caps)\n")


def test_gc_prunes_old_cached_phases_that_no_commit_uses(tmp_path, base_model):
    root = new_repo(tmp_path, base_model)
    bgit(root, "bake")
    phases = root / ".git" / "bgit" / "phases"
    orphan = phases / "train" / ("f" * 64)
    (orphan / "adapter").mkdir(parents=True)
    (orphan / "adapter" / "weights.bin").write_bytes(b"x" * 1000)
    stale_work = phases / "train" / (("e" * 64) + ".work")
    stale_work.mkdir()
    recent = phases / "rollout" / ("d" * 64)
    recent.mkdir()
    month_ago = time.time() - 30 * 86400
    for path in phases.glob("*/*"):
        if path != recent:
            os.utime(path, (month_ago, month_ago))

    report = json.loads(bgit(root, "gc", "--phase-days", "14", "--json").stdout)
    assert report["removed_phases"] == 2 and report["removed_phase_bytes"] >= 1000
    assert not orphan.exists() and not stale_work.exists() and recent.exists()
    plan = bgit(root, "bake", "--dry-run").stdout
    assert plan.count("cached") == 3, plan  # every phase HEAD's bake names survived
