"""End to end on the embedded SmolLM2-135M: init -> bake -> checkout -> PEFT load -> closer to the teacher.

One small bake is shared by the tests of this module (10 stims, 2 held out, short responses);
the KL closure on the held-out stims is recomputed here with plain transformers + PEFT,
independently of bgit's own eval code, and compared with what the bake recorded.
"""

import json

import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.slow

TRAIN_STIMS = [
    "What is the best way to learn to cook?",
    "Tell me about the ocean.",
    "How do I fix a flat bicycle tyre?",
    "What should I eat for breakfast?",
    "Why is the sky blue?",
    "Give me advice on making friends.",
    "How do computers work?",
    "What is your favourite season?",
]
MORE_STIMS = ["How do I stay calm before an exam?", "What makes a good story?"]
SYSTEM = "You are Yoda. Always speak like Yoda, with inverted word order, and mention the Force."


def config_text(learning_rate=1e-3):
    return yaml.safe_dump({
        "MODEL": {"base": "smollm2-135m"},
        "PROMPT": {"teacher": {"messages": [{"role": "system", "content": SYSTEM}]},
                   "student": {"messages": []}},
        "TARGET": {"name": "yoda", "max_tokens": 24, "temperature": 1.0, "num_traj_per_stimulus": 1, "augment": 0,
                   "generators": [{"type": "hardcoded", "stims": TRAIN_STIMS + MORE_STIMS}]},
        "BAKE": {"name": "yoda-test", "epochs": 3, "micro_batch_size": 4, "seed": 0,
                 "optimizer": {"learning_rate": learning_rate}, "data": {"train_eval_split": 0.8}},
    }, sort_keys=False)


def bgit(cwd, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"bgit {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "demo"
    bgit(root.parent, "init", str(root))
    (root / "input.yml").write_text(config_text())
    result = bgit(root, "bake", "-m", "first bake")
    return root, result


def test_bake_makes_one_commit_with_the_bake_tree(baked):
    root, result = baked
    log = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True, check=True)
    assert log.stdout.splitlines() == ["first bake"]
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    for path in ["input.yml", "bake.yml", "metrics.jsonl", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors", "targets/yoda/stim.jsonl", "targets/yoda/rollout.jsonl"]:
        assert path in files
    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["base_model"]["name"] == "smollm2-135m"
    assert record["metrics"]["final_train_kl"] > 0
    assert len(record["eval_stims"]["yoda"]) == 2  # 10 stims, 0.8 for training
    assert record["trajectories"] == {"train": 8, "eval": 2}
    assert "final KL" in result.stdout and "eval closure" in result.stdout
    note = json.loads(subprocess.run(["git", "notes", "--ref=bgit-eval", "show", "HEAD"], cwd=root,
                                     capture_output=True, text=True, check=True).stdout)
    assert note["closure"] == pytest.approx(record["metrics"]["eval_closure"])
    assert "eval: closure" in bgit(root, "log", "--oneline").stdout
    fsck = subprocess.run(["git", "fsck", "--full"], cwd=root, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_rebake_is_refused_and_dry_run_shows_everything_cached(baked):
    root, _ = baked
    again = bgit(root, "bake", check=False)
    assert again.returncode == 1
    assert again.stderr.startswith("Error: this config is already baked at HEAD")
    plan = bgit(root, "bake", "--dry-run").stdout
    assert plan.count("cached") == 3, plan


def test_changing_only_the_learning_rate_reruns_only_training(baked):
    root, _ = baked
    (root / "input.yml").write_text(config_text(learning_rate=5e-4))
    plan = bgit(root, "bake", "--dry-run").stdout.splitlines()
    states = {line.split()[0]: line.split()[1] for line in plan}
    assert states == {"stim[yoda]": "cached", "rollout[yoda]": "cached", "train": "would"}
    (root / "input.yml").write_text(config_text())


def test_checked_out_adapter_loads_and_closes_the_gap_on_held_out_stims(baked):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bgit.models import render_context, resolve_model

    root, _ = baked
    bgit(root, "checkout", "main", "--force")
    model_dir = resolve_model("smollm2-135m").path
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    baked_model = PeftModel.from_pretrained(base, str(root / "adapter")).eval()
    held_out = set(yaml.safe_load((root / "bake.yml").read_text())["eval_stims"]["yoda"])
    rows = [json.loads(line) for line in (root / "targets/yoda/rollout.jsonl").read_text().splitlines()]
    rows = [row for row in rows if row["stim_id"] in held_out]
    assert len(rows) == 2

    kl_base, kl_baked, tokens = 0.0, 0.0, 0
    for row in rows:  # the teacher's own samples of the held-out stims, as bgit's eval uses them
        teacher = render_context(tokenizer, [{"role": "system", "content": SYSTEM}], user=row["stim"])
        student = render_context(tokenizer, [], user=row["stim"])
        response = row["response_ids"]
        with torch.no_grad():
            with baked_model.disable_adapter():
                p = _response_logprobs(base, teacher, response)
                q_base = _response_logprobs(base, student, response)
            q_baked = _response_logprobs(baked_model, student, response)
        kl_base += (p.exp() * (p - q_base)).sum().item()
        kl_baked += (p.exp() * (p - q_baked)).sum().item()
        tokens += len(response)
    closure = 1 - kl_baked / kl_base
    assert closure > 0.2, (kl_baked / tokens, kl_base / tokens)
    note = json.loads(subprocess.run(["git", "notes", "--ref=bgit-eval", "show", "HEAD"], cwd=root,
                                     capture_output=True, text=True, check=True).stdout)
    assert note["closure"] == pytest.approx(closure, abs=2e-3)
    assert note["kl_prompted_base"] == pytest.approx(kl_base / tokens, rel=2e-3)


def _response_logprobs(model, context, response):
    import torch

    ids = torch.tensor([context + response])
    logits = model(input_ids=ids).logits[0].float()
    # logits at position p predict token p+1: the response's first token is predicted at len(context)-1
    return torch.log_softmax(logits[len(context) - 1: len(context) - 1 + len(response)].double(), dim=-1)
