"""The train-side keys of input.yml take effect: GJSD objective (against TRL's formula),
temperature, optimizer and scheduler types, checkpoints by step with exact resume,
activation checkpointing, attention kernel, eval/log intervals, peft_config."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from bgit.train import train_adapter
from bgit.train.loop import TorchStepper
from bgit.train.loss import full_bins, generalized_jsd, topk_bins
from train_helpers import bake_settings, baking_examples, teacher_logprobs, tiny_llama, topk_arrays


@pytest.fixture(scope="module")
def trl_jsd():
    pytest.importorskip("trl", reason="TRL is the reference for the GJSD formula (pip install trl)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from trl.experimental.gkd import GKDTrainer  # TRL >= 1.0
        except ImportError:
            from trl import GKDTrainer

    def reference(student_logits, teacher_logits, beta, temperature=1.0):
        """TRL's loss per row: [N, V] x [N, V] -> [N]."""
        jsd = GKDTrainer.generalized_jsd_loss(student_logits[None], teacher_logits[None], beta=beta,
                                              temperature=temperature, reduction="none")
        return jsd.sum(-1)[0]

    return reference


# -- the objective against TRL's GKDTrainer.generalized_jsd_loss -----------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_equals_trl_on_the_full_vocabulary(trl_jsd, beta, temperature):
    generator = torch.Generator().manual_seed(int(beta * 10 + temperature * 100))
    student, teacher = (torch.randn(7, 50, generator=generator) * 3 for _ in range(2))
    ours = generalized_jsd(*full_bins(student, teacher), beta, temperature)
    assert torch.allclose(ours, trl_jsd(student, teacher, beta, temperature), atol=1e-5)
    assert (ours > 1e-3).all()


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.5])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_topk_bins_are_trl_on_the_k_tokens_plus_the_tail_bucket(trl_jsd, beta, temperature):
    """Exactly the documented approximation: TRL's formula on the (K+1)-bin distributions; with
    K = vocabulary (no tail) it is TRL's formula on the whole vocabulary."""
    generator = torch.Generator().manual_seed(7)
    student, teacher = (torch.randn(5, 40, generator=generator) * 2 for _ in range(2))
    teacher_lp = torch.log_softmax(teacher, -1)
    for k in (8, 40):
        ids, values, tail = (torch.from_numpy(a) for a in topk_arrays(teacher_lp, k))
        logq, logp = topk_bins(student, ids, values, tail)
        ours = generalized_jsd(logq, logp, beta, temperature)
        if k == 40:
            expected = trl_jsd(student, teacher, beta, temperature)
        else:  # bins as logits: TRL's log_softmax leaves normalised log-probs as they are
            student_lp = torch.log_softmax(student, -1)
            tail_q = torch.logsumexp(student_lp.scatter(-1, ids.long(), -1e30), -1, keepdim=True)
            expected = trl_jsd(torch.cat([student_lp.gather(-1, ids.long()), tail_q], -1),
                               torch.cat([values, tail[:, None]], -1), beta, temperature)
        assert torch.allclose(ours, expected, atol=1e-5), (k, ours, expected)


def test_training_with_beta_uses_trls_gjsd_and_reports_the_true_kl(trl_jsd, tmp_path):
    model = tiny_llama(seed=11)
    examples = baking_examples(model, 6, seed=11)
    for ex in examples:  # loss: full recomputes the teacher
        ex.topk_ids = ex.topk_logprobs = ex.tail_logprob = None
    bake = bake_settings(epochs=4, micro_batch_size=6, loss="full", data={"beta": 0.5, "temperature": 0.8})
    # Step 1 runs before any update: the student is the parent model (LoRA B = 0).
    student = torch.cat([teacher_logprobs(model, ex.student_ids, ex.response_ids) for ex in examples])
    teacher = torch.cat([teacher_logprobs(model, ex.teacher_ids, ex.response_ids) for ex in examples])
    expected_loss = float(trl_jsd(student, teacher, 0.5, 0.8).mean())
    expected_kl = float(torch.nn.functional.kl_div(student, teacher, log_target=True, reduction="none").sum(-1).mean())
    result = train_adapter(model, None, examples, examples, bake, tmp_path)
    steps = [row for row in result.metrics if "train_kl" in row]
    assert steps[0]["train_loss"] == pytest.approx(expected_loss, abs=1e-5)
    assert steps[0]["train_kl"] == pytest.approx(expected_kl, abs=1e-5)
    assert abs(expected_loss - expected_kl) > 1e-3  # the objective genuinely differs from the KL
    assert steps[-1]["train_loss"] < 0.7 * steps[0]["train_loss"]
    plain = train_adapter(model, None, examples, examples, bake_settings(epochs=1, micro_batch_size=6, loss="full"),
                          tmp_path / "plain")
    assert "train_loss" not in plain.metrics[1] and plain.metrics[1]["train_kl"] == pytest.approx(expected_kl, abs=1e-5)


# -- optimizer and scheduler types ---------------------------------------------------------------


def lr_curve(result) -> list[float]:
    return [row["lr"] for row in result.metrics if "lr" in row]


def test_scheduler_types_shape_the_learning_rate_in_the_metrics(tmp_path):
    from transformers import get_scheduler

    model = tiny_llama(seed=12)
    examples = baking_examples(model, 8, seed=12)
    curves = {}
    for kind in ("huggingface", "polynomial", "cosine"):
        bake = bake_settings(epochs=4, micro_batch_size=2, gradient_accumulation_steps=2,
                             scheduler={"type": kind, "warmup_ratio": 0.25})
        curves[kind] = lr_curve(train_adapter(model, None, examples, [], bake, tmp_path / kind))
    for kind, name in (("huggingface", "linear"), ("polynomial", "polynomial")):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
        schedule = get_scheduler(name, optimizer, num_warmup_steps=2, num_training_steps=8)
        expected = []
        for _ in range(8):
            expected.append(schedule.get_last_lr()[0])
            optimizer.step()
            schedule.step()
        assert curves[kind] == pytest.approx(expected, abs=1e-12), kind
    assert curves["cosine"] != pytest.approx(curves["huggingface"]) and len(set(map(len, curves.values()))) == 1


@pytest.mark.parametrize("kind, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                       ("sgd", torch.optim.SGD), ("adafactor", torch.optim.Adafactor)])
def test_optimizer_types(tmp_path, kind, cls):
    model = tiny_llama(seed=13)
    examples = baking_examples(model, 8, seed=13)
    bake = bake_settings(epochs=3, optimizer={"type": kind, "learning_rate": 5e-2 if kind == "sgd" else 1e-2})
    from bgit.train.lora import attach_lora, detach_lora

    peft_model = attach_lora(model, bake)
    try:
        stepper = TorchStepper(peft_model, [p for p in peft_model.parameters() if p.requires_grad], bake, 1)
        assert type(stepper.optimizer) is cls
    finally:
        detach_lora(peft_model)
    result = train_adapter(model, None, examples, examples, bake, tmp_path)
    evals = [row["eval_kl"] for row in result.metrics if "eval_kl" in row]
    assert evals[-1] < evals[0], (kind, evals)


def test_layers_to_transform_with_all_linear(tmp_path):
    """PEFT takes a layer selection only with named modules: all-linear becomes the model's
    linear layers, in the chosen layers only, and only those train."""
    from safetensors.torch import load_file

    from bgit.train.errors import TrainError
    from bgit.train.lora import attach_lora

    model = tiny_llama(seed=14)
    examples = baking_examples(model, 8, seed=14)
    bake = bake_settings(model={"peft_config": {"layers_to_transform": [1]}})
    result = train_adapter(model, None, examples, examples, bake, tmp_path)
    weights = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    modules = {name.split(".lora_")[0].split("layers.")[1] for name in weights}
    assert modules == {f"1.{kind}" for kind in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    assert any(float(t.abs().sum()) > 0 for name, t in weights.items() if "lora_B" in name)
    evals = [row["eval_kl"] for row in result.metrics if "eval_kl" in row]
    assert evals[-1] < evals[0]

    with pytest.raises(TrainError, match="refused by PEFT: Target modules .* not found.*layers_to_transform"):
        attach_lora(model, bake_settings(model={"peft_config": {"layers_to_transform": [7]}}))


# -- checkpoints by step, exact resume, auto_resume, enabled --------------------------------------


class Crash(Exception):
    pass


def crash_at(step: int):
    calls = []

    def progress(n, total, **info):
        calls.append(n)
        if len(calls) == step:
            raise Crash()

    return progress


def adapter_tensors(result):
    from safetensors.torch import load_file

    return load_file(str(result.adapter_dir / "adapter_model.safetensors"))


def same_run(a, b) -> None:
    ta, tb = adapter_tensors(a), adapter_tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.allclose(ta[name], tb[name], atol=1e-6), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]  # noqa: E731
    for r1, r2 in zip(strip(a.metrics), strip(b.metrics), strict=True):
        assert r1.keys() == r2.keys() and all(r1[k] == pytest.approx(r2[k], abs=1e-6) for k in r1), (r1, r2)


def test_checkpoint_every_n_steps_resumes_mid_epoch_exactly(tmp_path):
    model = tiny_llama(seed=14)
    examples = baking_examples(model, 8, seed=14)
    bake = bake_settings(epochs=2, micro_batch_size=2, lora={"lora_dropout": 0.1},
                         scheduler={"type": "cosine", "warmup_ratio": 0.2},
                         checkpoint=[{"save_every_n_steps": 3, "save_every_n_epochs": 0}])
    whole = train_adapter(model, None, examples, examples[:3], bake, tmp_path / "whole")
    with pytest.raises(Crash):  # 4 steps per epoch: step 5 is mid-epoch 2, the checkpoint is at step 3
        train_adapter(model, None, examples, examples[:3], bake, tmp_path / "crashed", progress=crash_at(5))
    saved = [p.name for p in (tmp_path / "crashed" / "checkpoints").iterdir()]
    assert saved == ["step-00000003-epoch-0000"]
    again = train_adapter(model, None, examples, examples[:3], bake, tmp_path / "crashed")
    assert again.resumed_from.endswith("step-00000003-epoch-0000")
    same_run(whole, again)
    rerun = json.loads(json.dumps(again.metrics))
    assert [json.loads(line) for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()] == rerun


def test_auto_resume_false_starts_over_and_disabled_entries_write_nothing(tmp_path):
    model = tiny_llama(seed=15)
    examples = baking_examples(model, 8, seed=15)
    bake = bake_settings(epochs=2, micro_batch_size=2, checkpoint=[{"save_every_n_steps": 2, "auto_resume": False}])
    whole = train_adapter(model, None, examples, [], bake, tmp_path / "whole")
    with pytest.raises(Crash):
        train_adapter(model, None, examples, [], bake, tmp_path / "crashed", progress=crash_at(3))
    assert list((tmp_path / "crashed" / "checkpoints").iterdir())  # written, but not used:
    again = train_adapter(model, None, examples, [], bake, tmp_path / "crashed")
    assert again.resumed_from is None
    same_run(whole, again)
    off = bake_settings(epochs=2, micro_batch_size=2, checkpoint=[{"save_every_n_steps": 1, "enabled": False}])
    train_adapter(model, None, examples, [], off, tmp_path / "off")
    assert not (tmp_path / "off" / "checkpoints").exists()


# -- the model while baking: activation checkpointing, attention kernel, peft_config ---------------


def count_layer_runs(model) -> list[int]:
    """Runs of the decoder layers (a pre-hook: torch stops a recompute once it has what backward needs)."""
    calls = [0]
    for layer in model.model.layers:
        layer.self_attn.register_forward_pre_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_activation_checkpointing_recomputes_layers_and_gives_the_same_training(tmp_path):
    results, calls = {}, {}
    for disabled in (True, False):
        model = tiny_llama(seed=16)
        examples = baking_examples(model, 8, seed=16)
        counter = count_layer_runs(model)
        bake = bake_settings(epochs=2, micro_batch_size=4, model={"disable_activation_checkpoint": disabled})
        results[disabled] = train_adapter(model, None, examples, examples, bake, tmp_path / str(disabled))
        calls[disabled] = counter[0]
        assert not any(layer.training or layer.gradient_checkpointing for layer in model.model.layers)
    training_forwards = 2 * 2 * len(tiny_llama(seed=16).model.layers)  # epochs x micro-batches x layers
    assert calls[False] - calls[True] == training_forwards  # each training forward ran again in backward
    for a, b in zip(results[True].metrics, results[False].metrics, strict=True):
        for key in ("train_kl", "eval_kl", "epoch_train_kl"):
            if key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-5), key


def test_attention_implementation_is_used_while_training_and_restored(tmp_path):
    model = tiny_llama(seed=17)
    examples = baking_examples(model, 4, seed=17)
    before = model.config._attn_implementation
    seen = set()
    model.model.layers[0].register_forward_hook(lambda *args: seen.add(model.config._attn_implementation))
    eager = train_adapter(model, None, examples, examples, bake_settings(model={"attn_implementation": "eager"}),
                          tmp_path / "eager")
    assert seen == {"eager"} and model.config._attn_implementation == before == "sdpa"
    sdpa = train_adapter(model, None, examples, examples, bake_settings(), tmp_path / "sdpa")
    assert eager.final_eval_kl == pytest.approx(sdpa.final_eval_kl, rel=1e-4)  # float rounding only


def test_cpu_bf16_autocast_computes_attention_in_float32_and_restores_sdpa(tmp_path, monkeypatch):
    """Under CPU bf16 autocast the linear layers run in bf16 but SDPA gets float32 inputs (its
    bf16 backward is slow on CPUs); without autocast, or with a kernel named in BAKE.model,
    nothing changes; the model comes back with its own implementation."""
    sdpa_dtypes, implementations = [], set()
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def recording_sdpa(query, key, value, *args, **kwargs):  # what the kernel will compute in
        autocast = torch.is_autocast_enabled("cpu")
        sdpa_dtypes.append(torch.bfloat16 if autocast else torch.promote_types(query.dtype, value.dtype))
        return real_sdpa(query, key, value, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording_sdpa)
    model = tiny_llama(seed=19)
    examples = baking_examples(model, 4, seed=19)
    projection_dtypes = set()
    model.model.layers[0].self_attn.q_proj.register_forward_hook(
        lambda module, args, out: projection_dtypes.add(out.dtype) if torch.is_grad_enabled() else None)
    model.model.layers[0].register_forward_hook(lambda *args: implementations.add(model.config._attn_implementation))
    train_adapter(model, None, examples, examples, bake_settings(autocast="bf16"), tmp_path / "bf16")
    assert projection_dtypes == {torch.bfloat16}  # autocast is on ...
    assert set(sdpa_dtypes) == {torch.float32} and implementations == {"bgit_sdpa_float32"}  # ... attention is not
    assert model.config._attn_implementation == "sdpa"
    for name, settings in (("off", bake_settings(autocast="off")),
                           ("named", bake_settings(autocast="bf16", model={"attn_implementation": "sdpa"}))):
        implementations.clear()
        train_adapter(model, None, examples, examples, settings, tmp_path / name)
        assert implementations == {"sdpa"}, name


def test_peft_config_options_reach_the_adapter(tmp_path):
    model = tiny_llama(seed=18)
    examples = baking_examples(model, 4, seed=18)
    bake = bake_settings(epochs=1, model={"peft_config": {"use_rslora": True, "r": 4}})
    assert (bake.lora.r, bake.lora.lora_alpha) == (4, 8.0)
    result = train_adapter(model, None, examples, [], bake, tmp_path)
    saved = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert (saved["use_rslora"], saved["r"], saved["lora_alpha"]) == (True, 4, 8.0)


# -- logging and eval intervals ---------------------------------------------------------------------


def test_log_and_eval_intervals(tmp_path):
    model = tiny_llama(seed=19)
    examples = baking_examples(model, 8, seed=19)
    bake = bake_settings(epochs=2, micro_batch_size=2, train_log_iter_interval=3, eval_interval=3)
    rows = train_adapter(model, None, examples, examples[:2], bake, tmp_path).metrics
    assert [r["step"] for r in rows if "train_kl" in r] == [3, 6, 8]  # every 3rd step, and the last
    assert [(r["step"], r["epoch"]) for r in rows if "eval_kl" in r and "epoch_train_kl" not in r] == [
        (0, 0), (3, 1), (6, 2)]  # before training, then every 3rd step
    assert [r["step"] for r in rows if "epoch_train_kl" in r] == [4, 8]


def test_autocast_auto_takes_bf16_where_the_device_multiplies_it_natively(monkeypatch):
    from bgit.train import loop

    cpu = torch.device("cpu")
    assert loop.use_autocast("off", cpu) is False and loop.use_autocast("bf16", cpu) is True
    for native in (True, False):
        monkeypatch.setattr(loop, "native_bf16_cpu", lambda: native)
        assert loop.use_autocast("auto", cpu) is native
