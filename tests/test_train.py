"""The KL trainer on tiny random Llamas: objective maths, loop, resume, adapters."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
import torch

from bgit.config import ConfigValueError
from bgit.config.schema import BakeConfig
from bgit.train import TrainExample, full_kl, topk_kl, train_adapter
from bgit.train import loop as loop_module
from bgit.train.data import collate, prepare_examples
from bgit.train.errors import CheckpointMismatchError, InvalidExampleError, TrainError
from bgit.train.lora import FrozenBf16Weights, attach_lora, detach_lora, training_setup
from bgit.train.loop import TorchStepper, backward_group, evaluate_kl
from bgit.train.loss import batch_kl
from train_helpers import VOCAB, bake_settings, baking_examples, teacher_logprobs, tiny_llama, topk_arrays

fast_settings = bake_settings


def randomise_lora(peft_model, seed=0):
    """LoRA B starts at zero; give every LoRA tensor values so A and B both get gradients."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def lora_grads(peft_model) -> dict:
    return {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad and p.grad is not None}


# ------------------------------------------------------------------------ the maths


def test_topk_kl_matches_hand_computed_two_token_case():
    # V = 4, K = 2. Token 1: teacher p = [0.5, 0.3 | tail 0.2] on ids [2, 0];
    # token 2: teacher p = [0.9, 0.1 | tail 0] on ids [1, 3] (0 * log 0 = 0).
    logits = torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.0, 3.0, 0.0, 1.0]])
    ids = torch.tensor([[2, 0], [1, 3]])
    p = np.array([[0.5, 0.3], [0.9, 0.1]])
    p_tail = np.array([0.2, 0.0])
    # Student q by hand: softmax rows.
    e1 = np.exp([1.0, 0.0, 2.0, -1.0]); q1 = e1 / e1.sum()
    e2 = np.exp([0.0, 3.0, 0.0, 1.0]); q2 = e2 / e2.sum()
    kl1 = 0.5 * math.log(0.5 / q1[2]) + 0.3 * math.log(0.3 / q1[0]) + 0.2 * math.log(0.2 / (q1[1] + q1[3]))
    kl2 = 0.9 * math.log(0.9 / q2[1]) + 0.1 * math.log(0.1 / q2[3])
    with np.errstate(divide="ignore"):
        tail = torch.tensor(np.log(p_tail), dtype=torch.float32)
    got = topk_kl(logits, ids, torch.tensor(np.log(p), dtype=torch.float32), tail)
    assert got.tolist() == pytest.approx([kl1, kl2], abs=1e-6)
    # Written out: q1 = [0.23688, 0.08714, 0.64391, 0.03206], q2[1] = 0.80977, q2[3] = 0.10959.
    assert (kl1, kl2) == pytest.approx((0.04790, 0.08591), abs=2e-4)


def _reference_topk_logq(logits, ids):
    """log q over [K ids, tail] by autograd in float64: logsumexp over all, and over the rest."""
    x = logits.double()
    lse = torch.logsumexp(x, -1, keepdim=True)
    outside = x.scatter(-1, ids, float("-inf"))
    return torch.cat([x.gather(-1, ids) - lse, torch.logsumexp(outside, -1, keepdim=True) - lse], -1)


@pytest.mark.parametrize("scale", [1.0, 8.0, 30.0])  # 30: one row's tail holds 1e-10 of the mass
def test_topk_bins_values_and_hand_written_gradient_match_autograd(scale):
    from bgit.train.loss import topk_bins

    generator = torch.Generator().manual_seed(int(scale))
    logits = torch.randn(6, 300, generator=generator) * scale
    rows = []
    for peak, perm in zip(logits.argmax(-1), (torch.randperm(300, generator=generator) for _ in range(6))):
        rows.append(torch.cat([peak.view(1), perm[perm != peak][:19]]))  # the peak among the K, as in practice
    ids = torch.stack(rows)
    upstream = torch.randn(6, 21, generator=generator)
    ours_in = logits.clone().requires_grad_(True)
    logq, _ = topk_bins(ours_in, ids, torch.zeros(6, 20), torch.zeros(6))
    (logq * upstream).sum().backward()
    ref_in = logits.double().requires_grad_(True)
    expected = _reference_topk_logq(ref_in, ids)
    (expected * upstream.double()).sum().backward()
    assert torch.allclose(logq.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(ours_in.grad.double(), ref_in.grad, atol=1e-6)
    assert ours_in.grad.abs().sum() > 0.1


def test_topk_bins_gradient_keeps_the_logits_dtype_and_stays_finite_without_a_tail():
    from bgit.train.loss import topk_bins

    logits = torch.randn(3, 8).to(torch.bfloat16).requires_grad_(True)
    ids = torch.stack([torch.randperm(8) for _ in range(3)])  # K = V: an empty tail
    logq, _ = topk_bins(logits, ids, torch.zeros(3, 8), torch.zeros(3))
    logq[:, :-1].sum().backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad).all()
    assert (logq[:, -1] < -1e29).all()  # no mass in the tail, but no -inf either


def test_topk_with_k_equal_vocab_equals_full_mode_value_and_gradients():
    model = tiny_llama(seed=3)
    examples = baking_examples(model, 4, k=VOCAB, seed=3)
    items = prepare_examples(examples, 512, need_topk=True, need_teacher=True)
    peft_model = attach_lora(model, fast_settings())
    try:
        randomise_lora(peft_model)
        batch = collate(items, 0, torch.device("cpu"))
        results = {}
        for mode in ("topk", "full"):
            peft_model.zero_grad()
            kl = batch_kl(peft_model, batch, mode)
            kl.sum().backward()
            results[mode] = (kl.detach(), lora_grads(peft_model))
    finally:
        detach_lora(peft_model)
    (kl_t, g_t), (kl_f, g_f) = results["topk"], results["full"]
    assert kl_f.min() > 1e-3  # teacher (with prefix) and student genuinely differ
    assert torch.allclose(kl_t, kl_f, atol=1e-5)
    assert g_t.keys() == g_f.keys() and len(g_t) > 0
    for name in g_t:
        assert torch.allclose(g_t[name], g_f[name], atol=1e-5), name
        assert g_t[name].abs().max() > 0, name


def test_full_mode_runs_the_shared_teacher_prompt_once_with_the_same_kl_and_gradients(monkeypatch):
    """loss="full": the teacher prompt every row starts with runs once per batch (its KV cache
    shared), and the KL and the adapter's gradients are those of whole teacher rows."""
    from bgit.train import prefix as prefix_module
    from bgit.train.data import teacher_prefix

    model = tiny_llama(seed=4)
    examples = baking_examples(model, 4, prefix_len=24, seed=4)
    items = prepare_examples(examples, 512, need_topk=False, need_teacher=True)
    peft_model = attach_lora(model, fast_settings())
    shared = []
    original = prefix_module.prefix_cache
    monkeypatch.setattr(prefix_module, "prefix_cache",
                        lambda model, ids, rows: shared.append((ids.shape[1], rows)) or original(model, ids, rows))
    try:
        randomise_lora(peft_model)
        prefix = teacher_prefix(peft_model, items)
        assert prefix >= 24 and len({tuple(it.teacher_input_ids[:prefix]) for it in items}) == 1
        results = []
        for length in (prefix, 0):
            peft_model.zero_grad()
            kl = batch_kl(peft_model, collate(items, 0, torch.device("cpu"), length), "full")
            kl.sum().backward()
            results.append((kl.detach(), lora_grads(peft_model)))
    finally:
        detach_lora(peft_model)
    assert shared == [(prefix, 4)]  # once, for the shared batch only
    (kl_shared, g_shared), (kl_plain, g_plain) = results
    assert kl_plain.min() > 1e-3
    torch.testing.assert_close(kl_shared, kl_plain, atol=1e-5, rtol=1e-5)
    assert g_shared.keys() == g_plain.keys() and len(g_plain) > 0
    for name in g_plain:
        torch.testing.assert_close(g_shared[name], g_plain[name], atol=1e-5, rtol=1e-4)
    assert teacher_prefix(model, prepare_examples(examples, 512, need_topk=True, need_teacher=False)) == 0


def test_full_kl_is_zero_for_identical_distributions_and_positive_otherwise():
    logits = torch.randn(3, 7)
    assert full_kl(logits, logits).abs().max() < 1e-6
    assert (full_kl(logits, logits.flip(-1)) > 0).all()


def test_first_response_token_is_trained():
    model = tiny_llama(seed=4)
    context, response = [5, 17, 42], [99]
    lps = teacher_logprobs(model, [7, 8, 9] + context, response)  # prompted teacher
    ids, vals, tail = topk_arrays(lps, 8)
    example = TrainExample(context, response, ids, vals, tail)
    # By hand: the student's distribution for response token 0 is the logits at the last context position.
    with torch.no_grad():
        student = model(input_ids=torch.tensor([context])).logits[0, -1:]
    expected = topk_kl(student, torch.tensor(ids), torch.tensor(vals), torch.tensor(tail))
    items = prepare_examples([example], 64, True, False)
    assert items[0].input_ids == context  # the single response token is predicted, not fed
    peft_model = attach_lora(model, fast_settings())
    try:
        randomise_lora(peft_model)
        with peft_model.disable_adapter():
            base_kl = batch_kl(peft_model, collate(items, 0, torch.device("cpu")), "topk")
        kl = batch_kl(peft_model, collate(items, 0, torch.device("cpu")), "topk")
        kl.sum().backward()
        grads = lora_grads(peft_model)
    finally:
        detach_lora(peft_model)
    assert base_kl.shape == (1,) and float(expected[0]) > 1e-3
    assert torch.allclose(base_kl, expected, atol=1e-6)
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


def test_gradients_equal_across_micro_batch_splits():
    model = tiny_llama(seed=5)
    examples = baking_examples(model, 4, seed=5)
    examples[1].weight, examples[2].weight = 2.0, 0.5
    assert len({len(e.response_ids) for e in examples}) > 1  # unequal lengths make normalisation matter
    grads = []
    for mbs, gas in ((4, 1), (1, 4), (2, 2)):
        settings = fast_settings(micro_batch_size=mbs, gradient_accumulation_steps=gas)
        items = prepare_examples(examples, 512, True, False)
        torch.manual_seed(0)
        peft_model = attach_lora(model, settings)
        try:
            randomise_lora(peft_model)
            stepper = TorchStepper(peft_model, [p for p in peft_model.parameters() if p.requires_grad], settings, 1)
            backward_group(stepper, items, [0, 1, 2, 3], settings, 0, torch.device("cpu"), False)
            grads.append(lora_grads(peft_model))
        finally:
            detach_lora(peft_model)
    for other in grads[1:]:
        for name, g in grads[0].items():
            assert torch.allclose(g, other[name], atol=1e-6), name


# ------------------------------------------------------------------------ the loop


def test_training_kl_falls_by_ninety_percent(tmp_path):
    model = tiny_llama(seed=0)
    examples = baking_examples(model, 16, seed=1)
    progress_calls = []
    result = train_adapter(model, None, examples, examples, fast_settings(epochs=10), tmp_path,
                           progress=lambda n, total, **info: progress_calls.append((n, total, info)))
    evals = [r["eval_kl"] for r in result.metrics if "eval_kl" in r]
    assert evals[0] > 0.5
    assert evals[-1] <= 0.1 * evals[0], evals
    assert result.final_eval_kl == evals[-1]
    assert len(progress_calls) == 40 and progress_calls[0][1] == 40 and "kl" in progress_calls[0][2]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == json.loads(json.dumps(result.metrics))
    step_rows = [r for r in rows if "train_kl" in r]
    assert {"step", "epoch", "lr", "train_kl", "tokens", "tokens_per_s"} <= step_rows[0].keys()
    assert result.tokens == sum(len(e.response_ids) for e in examples) * 10


def test_saved_adapter_reloads_with_peft_and_parent_model_is_unchanged(tmp_path):
    from peft import PeftModel

    model = tiny_llama(seed=1)
    examples = baking_examples(model, 8, seed=2)
    probe = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = model(input_ids=probe).logits
    result = train_adapter(model, None, examples, examples, fast_settings(epochs=2), tmp_path)
    with torch.no_grad():
        assert torch.equal(model(input_ids=probe).logits, before)  # LoRA removed again
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    reloaded = PeftModel.from_pretrained(model, str(result.adapter_dir))
    try:
        items = prepare_examples(examples, 1024, True, False)
        kl = evaluate_kl(reloaded, items, fast_settings(), 0, torch.device("cpu"), False)
        with torch.no_grad():
            assert not torch.allclose(reloaded(input_ids=probe).logits, before)
    finally:
        reloaded.unload()
    assert kl == pytest.approx(result.final_eval_kl, abs=1e-6)
    assert kl < [r["eval_kl"] for r in result.metrics if "eval_kl" in r][0]


def test_eval_kl_batches_fill_the_logits_budget_and_equal_one_item_at_a_time(monkeypatch):
    """The in-training eval batches by length up to BATCH_LOGITS (never below a micro-batch);
    its KL is the per-token mean of each item's KL computed alone."""
    from bgit.train import data, loop

    model = tiny_llama(seed=4)
    examples = baking_examples(model, 11, seed=5)
    peft_model = attach_lora(model, fast_settings())
    randomise_lora(peft_model, seed=6)
    items = prepare_examples(examples, 1024, True, False)
    try:
        with torch.no_grad():
            alone = [float(batch_kl(peft_model, collate([it], 0, "cpu"), "topk").sum()) for it in items]
        budget = 20  # response tokens per batch at this vocabulary: 1-3 items of 4-11 tokens
        monkeypatch.setattr(data, "BATCH_LOGITS", budget * VOCAB)
        batches = []
        monkeypatch.setattr(loop, "collate", lambda its, *a: batches.append(its) or collate(its, *a))
        kl = evaluate_kl(peft_model, items, fast_settings(micro_batch_size=2), 0, torch.device("cpu"))
    finally:
        detach_lora(peft_model)
    assert kl == pytest.approx(sum(alone) / sum(it.n_response for it in items), rel=1e-5)
    assert sorted(id(it) for b in batches for it in b) == sorted(id(it) for it in items)
    lengths = [len(it.input_ids) for b in batches for it in b]
    assert lengths == sorted(lengths)
    assert all(len(b) >= 2 for b in batches[:-1]) and len(batches) < len(items) / 1.5
    assert all(len(b) == 2 or sum(it.n_response for it in b) <= budget for b in batches)
    assert any(len(b) > 2 for b in batches)


class Crash(Exception):
    pass


def test_resume_after_crash_equals_uninterrupted_run(tmp_path):
    from safetensors.torch import load_file

    model = tiny_llama(seed=2)
    examples = baking_examples(model, 8, seed=3)
    settings = fast_settings(epochs=3, micro_batch_size=2, gradient_accumulation_steps=2,
                             scheduler={"type": "cosine", "warmup_ratio": 0.2}, lora={"lora_dropout": 0.1})
    whole = train_adapter(model, None, examples, examples[:3], settings, tmp_path / "whole")

    calls = []

    def crash_in_epoch_two(n, total, **info):
        calls.append(n)
        if len(calls) == 3:  # 2 steps per epoch: the first step of epoch 2 has run
            raise Crash()

    with pytest.raises(Crash):
        train_adapter(model, None, examples, examples[:3], settings, tmp_path / "crashed", progress=crash_in_epoch_two)
    assert (tmp_path / "crashed" / "checkpoints" / "step-00000002-epoch-0001" / "state.json").is_file()
    resumed_progress = []
    again = train_adapter(model, None, examples, examples[:3], settings, tmp_path / "crashed",
                          progress=lambda n, total, **info: resumed_progress.append((n, info)))
    assert again.resumed_from is not None and whole.resumed_from is None
    assert resumed_progress[0] == (2, {"resumed": True})
    a = load_file(str(whole.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(again.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]
    for r1, r2 in zip(strip(whole.metrics), strip(again.metrics), strict=True):
        assert r1.keys() == r2.keys()
        for k in r1:
            assert r1[k] == pytest.approx(r2[k], abs=1e-6), k
    assert again.final_eval_kl == pytest.approx(whole.final_eval_kl, abs=1e-6)


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    model = tiny_llama(seed=2)
    examples = baking_examples(model, 4, seed=3)

    def crash_after_first_epoch(n, total, **info):
        if n == 1 and info.get("kl") is not None and crash_after_first_epoch.calls == 1:
            raise Crash()
        crash_after_first_epoch.calls += 1

    crash_after_first_epoch.calls = 0
    with pytest.raises(Crash):
        train_adapter(model, None, examples, [], fast_settings(epochs=2), tmp_path, progress=crash_after_first_epoch)
    with pytest.raises(CheckpointMismatchError) as err:
        train_adapter(model, None, examples, [], fast_settings(epochs=2, optimizer={"learning_rate": 5e-3}), tmp_path)
    assert str(err.value) == (
        f"checkpoint {tmp_path / 'checkpoints' / 'step-00000001-epoch-0001'} was made with other training data or settings;"
        " remove it to start over"
    )


def test_no_dropout_while_baking(tmp_path):
    model = tiny_llama(seed=6, dropout=0.5)
    peft_model = attach_lora(model, fast_settings())
    try:
        randomise_lora(peft_model)
        probe = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
        first, second = peft_model(input_ids=probe).logits, peft_model(input_ids=probe).logits
        assert torch.equal(first, second)
        assert not any(m.training for n, m in peft_model.named_modules() if "lora_dropout" not in n)
    finally:
        detach_lora(peft_model)
    configured = attach_lora(model, fast_settings(lora={"lora_dropout": 0.1}))  # LoRA's own dropout stays as asked
    try:
        lora_dropouts = [m for n, m in configured.named_modules() if n.endswith("lora_dropout.default")]
        assert lora_dropouts and all(m.training for m in lora_dropouts)
        assert not configured.base_model.model.model.layers[0].self_attn.training
    finally:
        detach_lora(configured)


def test_truncation_keeps_context_and_cuts_response_tail():
    ids, vals, tail = np.zeros((6, 2), np.int32), np.zeros((6, 2), np.float32), np.zeros(6, np.float32)
    example = TrainExample([1, 2, 3, 4], [10, 11, 12, 13, 14, 15], ids, vals, tail)
    item = prepare_examples([example], 7, True, False)[0]
    assert item.n_response == 3 and item.input_ids == [1, 2, 3, 4, 10, 11]
    assert item.topk_ids.shape == (3, 2)
    with pytest.raises(InvalidExampleError) as err:
        prepare_examples([example], 4, True, False)
    assert str(err.value) == "training example 0: student context has 4 tokens, max_length is 4; raise BAKE.data.max_length"


def test_bad_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(ConfigValueError) as err:
        fast_settings(scheduler={"type": "step"})
    assert str(err.value).startswith("BAKE.scheduler.type: expected one of constant, linear, cosine, ")
    assert str(err.value).endswith(", got 'step'")
    with pytest.raises(TrainError) as err:
        train_adapter(tiny_llama(), None, [], [], fast_settings(), tmp_path)
    assert str(err.value) == "no training examples: the rollout produced no trajectories to bake"
    bad = TrainExample([1, 2], [3, 4], np.zeros((1, 2), np.int32), np.zeros((1, 2), np.float32), np.zeros(1, np.float32))
    with pytest.raises(InvalidExampleError) as err:
        prepare_examples([bad], 64, True, False)
    assert str(err.value) == "training example 0: top-K arrays have shapes (1, 2)/(1, 2), expected [2, K]"
    with pytest.raises(ConfigValueError) as err:
        fast_settings(deepspeed={"enabled": True, "zero_stage": 4})
    assert str(err.value) == "BAKE.deepspeed.zero_optimization.stage: must be in [0, 3], got 4"


def test_full_mode_loop_recomputes_the_teacher_and_lowers_kl(tmp_path, monkeypatch):
    from bgit.train import prefix as prefix_module

    model = tiny_llama(seed=7)
    examples = baking_examples(model, 4, prefix_len=20, seed=7)
    for ex in examples:  # full mode needs no cached top-K
        ex.topk_ids = ex.topk_logprobs = ex.tail_logprob = None
    shared = []
    original = prefix_module.prefix_cache
    monkeypatch.setattr(prefix_module, "prefix_cache",
                        lambda model, ids, rows: shared.append(ids.shape[1]) or original(model, ids, rows))
    result = train_adapter(model, None, examples, examples, fast_settings(epochs=4, loss="full"), tmp_path)
    evals = [r["eval_kl"] for r in result.metrics if "eval_kl" in r]
    assert evals[-1] < 0.7 * evals[0], evals
    # 4 steps of one micro-batch and 5 evals of one batch, each ran the 20 prompt tokens once
    assert len(shared) == 4 + 5 and min(shared) >= 20, shared


def test_bf16_autocast_loop_lowers_the_fp32_eval_kl(tmp_path):
    model = tiny_llama(seed=8)
    examples = baking_examples(model, 4, seed=8)
    result = train_adapter(model, None, examples, examples, fast_settings(epochs=4, autocast="bf16"), tmp_path)
    evals = [r["eval_kl"] for r in result.metrics if "eval_kl" in r]
    assert result.autocast is True
    assert evals[-1] < 0.7 * evals[0], evals


def test_frozen_weights_cast_once_give_autocasts_gradients_bit_for_bit():
    model = tiny_llama(seed=9)
    model.lm_head.weight = model.model.embed_tokens.weight  # a tied output head, as SmolLM2's
    examples = baking_examples(model, 4, seed=9)
    settings = fast_settings(autocast="bf16")
    items = prepare_examples(examples, 512, True, False)
    peft_model = attach_lora(model, settings)
    try:
        randomise_lora(peft_model)
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        stepper = TorchStepper(peft_model, trainable, settings, 1)
        weights = FrozenBf16Weights(peft_model)
        grads, dtypes = [], []
        with training_setup(peft_model, settings.model, True):
            for cast_once in (False, True):
                for p in trainable:
                    p.grad = None
                with weights if cast_once else contextlib.nullcontext():
                    dtypes.append({model.lm_head.weight.dtype, model.model.layers[0].mlp.down_proj.weight.dtype})
                    backward_group(stepper, items, [0, 1, 2, 3], settings, 0, torch.device("cpu"), True)
                grads.append(lora_grads(peft_model))
    finally:
        detach_lora(peft_model)
    assert len(weights.swaps) == 2 * 7 + 1  # every frozen linear of 2 layers, and the head
    assert dtypes == [{torch.float32}, {torch.bfloat16}]
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 2 * 2 * 7
    for name, g in grads[0].items():
        assert torch.equal(g, grads[1][name]), name
    # outside, the float32 weights are back, the head tied to its embedding again
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_bf16_autocast_loop_casts_the_frozen_weights_once_for_the_same_adapter(tmp_path, monkeypatch):
    model = tiny_llama(seed=10)
    examples = baking_examples(model, 6, seed=10)
    settings = fast_settings(epochs=2, autocast="bf16", micro_batch_size=2)
    entered = []

    class Counting(FrozenBf16Weights):
        def __enter__(self):
            entered.append(1)
            return super().__enter__()

    monkeypatch.setattr(loop_module, "FrozenBf16Weights", Counting)
    cast_once = train_adapter(model, None, examples, examples[:2], settings, tmp_path / "once")
    assert len(entered) == 6  # 3 steps an epoch, 2 epochs
    monkeypatch.setattr(loop_module, "FrozenBf16Weights", lambda model: contextlib.nullcontext())
    per_forward = train_adapter(model, None, examples, examples[:2], settings, tmp_path / "autocast")
    assert [r.get("eval_kl") for r in cast_once.metrics] == [r.get("eval_kl") for r in per_forward.metrics]
    from safetensors.torch import load_file

    a = load_file(cast_once.adapter_dir / "adapter_model.safetensors")
    b = load_file(per_forward.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
