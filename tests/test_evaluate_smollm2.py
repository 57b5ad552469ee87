"""Eval and generation on the embedded SmolLM2-135M (its chat template injects a default system
prompt when none is given: the student context must not carry it)."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow

SYSTEM = "You are a pirate. Always talk like a pirate."
STIMS = ["What is the weather like?", "How do I cook rice?"]


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    from bgit.evaluate import StagedBake
    from bgit.models import load_model, render_context, resolve_model
    from bgit.record import BakeRecord, write_jsonl

    work = tmp_path_factory.mktemp("smollm2")
    resolved = resolve_model("smollm2-135m")
    model, tokenizer = load_model(resolved, device="cpu")
    rows = []
    torch.manual_seed(0)
    for text in STIMS:
        context = render_context(tokenizer, [{"role": "system", "content": SYSTEM}], user=text)
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor([context]), max_new_tokens=8, do_sample=True, top_k=0,
                                 pad_token_id=tokenizer.pad_token_id)
        import blake3
        rows.append({"stim_id": blake3.blake3(text.encode()).hexdigest()[:12], "stim": text, "traj": 0,
                     "response_ids": out[0, len(context):].tolist()})
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    peft_model.save_pretrained(str(work / "adapter"), safe_serialization=True)
    write_jsonl(work / "rollout.jsonl", rows)
    (work / "input.yml").write_text(yaml.safe_dump({
        "MODEL": {"base": "smollm2-135m"},
        "PROMPT": {"teacher": {"messages": [{"role": "system", "content": SYSTEM}]}, "student": {"messages": []}},
        "TARGET": {"name": "pirate", "max_tokens": 8, "generators": [{"type": "hardcoded", "stims": STIMS}]},
    }))
    record = BakeRecord.from_dict({"base_model": {"name": "smollm2-135m", "fingerprint": resolved.fingerprint},
                                   "targets": ["pirate"], "eval_stims": {"pirate": [r["stim_id"] for r in rows]}})
    files = {"input.yml": work / "input.yml", "targets/pirate/rollout.jsonl": work / "rollout.jsonl",
             "adapter/adapter_config.json": work / "adapter" / "adapter_config.json",
             "adapter/adapter_model.safetensors": work / "adapter" / "adapter_model.safetensors"}
    return StagedBake(files, record), tokenizer


def test_student_context_has_no_default_system_prompt(staged):
    from bgit.evaluate.closure import held_out_items

    bake, tokenizer = staged
    items, source, note = held_out_items(bake, tokenizer)
    assert source == "eval_stims" and note is None and len(items) == 2
    student = tokenizer.decode(items[0].student_ids)
    assert "system" not in student and "SmolLM" not in student
    assert SYSTEM in tokenizer.decode(items[0].teacher_ids)


def _log_probs(model, context, response):
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context + response])).logits[0]
    return torch.log_softmax(logits[len(context) - 1: len(context) - 1 + len(response)].double(), -1)


def test_eval_on_smollm2(staged):
    from peft import PeftModel

    from bgit.evaluate import evaluate_bake
    from bgit.evaluate.closure import held_out_items
    from bgit.models import load_model, resolve_model

    bake, tokenizer = staged
    results = evaluate_bake(bake, device="cpu")
    assert results.stims == 2 and results.tokens > 0
    assert results.kl_prompted_base > 0.05  # the pirate prompt changes the distribution
    assert math.isfinite(results.kl_prompted_baked) and results.kl_prompted_reprompted > 0
    # the same KLs by plain forward passes over the same contexts, in float64
    items, _, _ = held_out_items(bake, tokenizer)
    base = load_model(resolve_model("smollm2-135m"), device="cpu")[0]
    baked = PeftModel.from_pretrained(load_model(resolve_model("smollm2-135m"), device="cpu")[0],
                                      str(bake.adapter_dir())).eval()
    sums, tokens = [0.0, 0.0], 0
    for item in items:
        p = _log_probs(base, item.teacher_ids, item.response_ids)
        for i, model in enumerate((base, baked)):
            q = _log_probs(model, item.student_ids, item.response_ids)
            sums[i] += float((p.exp() * (p - q)).sum())
        tokens += len(item.response_ids)
    assert results.tokens == tokens
    assert results.kl_prompted_base == pytest.approx(sums[0] / tokens, rel=1e-3)
    assert results.kl_prompted_baked == pytest.approx(sums[1] / tokens, rel=1e-3)
    assert results.closure == pytest.approx(1 - sums[1] / sums[0], rel=1e-3, abs=1e-4)


def test_scale_zero_generates_like_the_base_model(staged):
    from bgit.evaluate.chat import answer
    from bgit.evaluate.models import load_baked

    bake, _ = staged
    zero, tokenizer, _ = load_baked(bake, scale=0.0, device="cpu")
    with_zero = answer(zero, tokenizer, STIMS[0], max_tokens=8)
    with zero.disable_adapter():
        with_base = answer(zero, tokenizer, STIMS[0], max_tokens=8)
    assert with_zero["response"] == with_base["response"] and with_zero["tokens"] > 0
