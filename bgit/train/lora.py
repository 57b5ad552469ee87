"""PEFT LoRA set-up for baking, adapter saving, and rank concatenation of bake chains."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from bgit.train.errors import AdapterConcatError, TrainError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def attach_lora(model, bake):
    """Wrap the frozen parent model with a fresh trainable LoRA adapter (``bake`` = BakeConfig:
    baked_adapter_config plus model.peft_config), base dropout off."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel) or hasattr(model, "peft_config"):
        raise TrainError("the parent model already carries a LoRA adapter; merge it (merge_and_unload) before baking")
    lora = bake.lora
    options = bake.model.peft_config  # the loader moved its LoRA keys into bake.lora
    targets = lora.target_modules
    if targets == "all-linear" and options.get("layers_to_transform") is not None:
        targets = linear_module_names(model)  # PEFT takes a layer selection only with named modules
    try:
        config = LoraConfig(
            **options,
            r=lora.r,
            lora_alpha=lora.lora_alpha,
            lora_dropout=lora.lora_dropout,
            bias=lora.bias,
            target_modules=targets if isinstance(targets, str) else list(targets),
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, config)
    except ValueError as error:  # PEFT refuses a combination, e.g. layers or module names the model lacks
        raise TrainError(f"the LoRA settings (BAKE.model.baked_adapter_config, peft_config) were refused "
                         f"by PEFT: {str(error).splitlines()[0]}") from None
    set_baking_mode(peft_model)
    return peft_model


def linear_module_names(model) -> list[str]:
    """What 'all-linear' adapts (PEFT's rule), as module names: the last name component of
    every linear or Conv1D layer except the output head."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head}
    return sorted(names)


def set_baking_mode(peft_model) -> None:
    """Eval mode everywhere (no base dropout), except LoRA's own dropout when configured."""
    peft_model.eval()
    lora_dropout(peft_model, True)


def lora_dropout(peft_model, on: bool) -> None:
    """LoRA's dropout layers on (training) or off (evaluation is deterministic)."""
    for name, module in peft_model.named_modules():
        if "lora_dropout" in name.split(".")[:-1]:  # lora_dropout.<adapter name>
            module.train(on)


@contextmanager
def training_setup(peft_model, model_config, cpu_autocast: bool = False):
    """BAKE.model's attention kernel and activation checkpointing for the run; both are undone
    afterwards, so the caller's model comes back as it was. ``cpu_autocast``: bf16 autocast on a
    CPU, where SDPA runs in float32 unless BAKE.model names a kernel (see ``FLOAT32_SDPA``)."""
    base = peft_model.get_base_model()
    undo = []
    try:
        if model_config.attn_implementation:
            undo.append(_use_attention(base, model_config.attn_implementation))
        elif cpu_autocast and base.config._attn_implementation == "sdpa":
            undo.append(_use_attention(base, register_float32_sdpa()))
        if not model_config.disable_activation_checkpoint:
            undo.append(_checkpoint_activations(base))
        yield
    finally:
        for restore in reversed(undo):
            restore()


class FrozenBf16Weights:
    """bf16 copies of the frozen float32 linear weights, swapped in around the training steps
    under CPU bf16 autocast (``with``), the float32 ones back outside them.

    Autocast caches its casts only for tensors that require grad, so it casts every frozen
    weight to bf16 again in every forward pass; these are the same values, cast once, so a step
    computes exactly what it did (tests/test_train.py compares the gradients bit for bit),
    while the per-epoch eval, which runs without autocast, still sees float32. SmolLM2-135M +
    LoRA r 16 on 2 AMX cores: 645 -> 579 ms per step of 4 x ~69 tokens, french's training phase
    316-321 -> 273-275 s with the same adapter (bench/results/2026-12-02-x86_64-xeon-amx-2core/
    frozen-bf16*). The copies cost half the float32 weights' memory, which autocast's per-step
    casts also held until each layer's backward (the trainer bench's peak RSS: 2,315 MB; 2,331
    in its earlier run without them).
    """

    def __init__(self, model):
        import torch

        self.swaps = [(module, module.weight,
                       torch.nn.Parameter(module.weight.detach().to(torch.bfloat16), requires_grad=False))
                      for module in model.modules()
                      if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad
                      and module.weight.dtype == torch.float32]

    def __enter__(self):
        for module, _, bf16 in self.swaps:
            module.weight = bf16  # a tied output head leaves its embedding's float32 weight alone
        return self

    def __exit__(self, *exc):
        for module, fp32, _ in self.swaps:
            module.weight = fp32


def _use_attention(base, name: str):
    before = base.config._attn_implementation
    try:
        base.set_attn_implementation(name)
    except (AttributeError, ImportError, ValueError) as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise TrainError(f"BAKE.model.attn_implementation: cannot use {name} here: {first}") from None
    return lambda: base.set_attn_implementation(before)


FLOAT32_SDPA = "bgit_sdpa_float32"


def register_float32_sdpa() -> str:
    """transformers' SDPA attention with bf16 query/key/value computed in float32.

    Under CPU bf16 autocast the linear layers gain from AMX, but torch's CPU flash-attention
    backward in bf16 is slow: SmolLM2-135M + LoRA, 4 x 80 tokens, 2 cores, it took 205 ms of a
    1.1 s training step against 37 ms in float32 (interleaved A/B: 1100 -> 859 ms per step).
    """
    import torch
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def sdpa_float32(module, query, key, value, attention_mask, **kwargs):
        with torch.autocast(query.device.type, enabled=False):
            out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(),
                                                  attention_mask, **kwargs)
        return out.to(query.dtype), weights

    AttentionInterface.register(FLOAT32_SDPA, sdpa_float32)
    return FLOAT32_SDPA


def _checkpoint_activations(base):
    """Recompute each decoder layer's activations in the backward pass.

    transformers checkpoints a layer only while ``layer.training`` is set; the model stays in
    eval mode (no dropout), so only that flag of the checkpointed layers is raised, not their
    submodules'.
    """
    enable = getattr(base, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:  # transformers < 5
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in base.modules() if isinstance(m, GradientCheckpointingLayer)]
    except ImportError:  # older transformers check the flag on the decoder stack
        layers = [m for m in base.modules() if getattr(m, "gradient_checkpointing", False) is True]
    if not layers:
        raise TrainError(f"BAKE.model.disable_activation_checkpoint: {type(base).__name__} has no layers to checkpoint")
    for layer in layers:
        layer.training = True

    def restore():
        for layer in layers:
            layer.training = False
        disable = getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable
        disable()

    return restore


def detach_lora(peft_model) -> None:
    """Remove the injected LoRA layers so the caller's model is the plain parent again."""
    peft_model.base_model.unload()


def save_adapter(peft_model, out_dir: Path) -> Path:
    """save_pretrained into a temp dir, then rename: a half-written adapter is never visible."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(str(tmp), safe_serialization=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


# ------------------------------------------------------------------ sequential baking


def lora_scale(config: dict, module: str = "", rank: int | None = None) -> float:
    """A PEFT LoRA module's scale: lora_alpha / r (or / sqrt(r) with rsLoRA), honouring
    rank_pattern/alpha_pattern for ``module``; ``rank`` stands in for a config without r."""
    r = config.get("r", rank)
    alpha = config.get("lora_alpha", r)
    for key, value in (config.get("rank_pattern") or {}).items():
        if re.search(rf"(^|\.){key}$", module):
            r = value
    for key, value in (config.get("alpha_pattern") or {}).items():
        if re.search(rf"(^|\.){key}$", module):
            alpha = value
    denominator = math.sqrt(r) if config.get("use_rslora") else r
    return float(alpha) / float(denominator)


def _read_adapter(path: Path):
    from safetensors.torch import load_file

    cfg_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    if not cfg_file.is_file() or not weights_file.is_file():
        raise AdapterConcatError(path, f"expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    config = json.loads(cfg_file.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterConcatError(path, f"peft_type {config.get('peft_type')} is not LORA")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise AdapterConcatError(path, f"{key} is not supported")
    if config.get("use_dora") or config.get("modules_to_save") or config.get("bias", "none") != "none":
        raise AdapterConcatError(path, "DoRA, modules_to_save and LoRA biases are not supported")
    weights = load_file(str(weights_file))
    for name in weights:
        if not (name.endswith(".lora_A.weight") or name.endswith(".lora_B.weight")):
            raise AdapterConcatError(path, f"unsupported tensor {name}")
    return config, weights


def _modules(weights: dict) -> set[str]:
    return {name.rsplit(".lora_", 1)[0] for name in weights}


def concat_adapters(adapter_dirs: list[Path], out_dir: Path) -> Path:
    """One PEFT adapter equal to a chain base -> bake1 -> bake2 -> ... exactly.

    Bake i was trained on the base with bakes 1..i-1 merged, so the chain's weight delta is
    sum_i s_i B_i A_i = s [B_1 s_1/s, B_2 s_2/s, ...] [A_1; A_2; ...]. The output uses
    r = sum r_i and lora_alpha = r (s = 1); a module missing from a bake gets zero blocks.
    """
    from safetensors.torch import save_file

    if not adapter_dirs:
        raise AdapterConcatError("(none)", "no adapters given")
    adapters = [_read_adapter(Path(p)) for p in adapter_dirs]
    shapes = _module_shapes(adapter_dirs, adapters)
    out = {}
    for m in sorted(shapes):
        out[f"{m}.lora_A.weight"], out[f"{m}.lora_B.weight"] = _stacked_factors(m, shapes[m], adapters)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(out, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    (tmp / ADAPTER_CONFIG).write_text(json.dumps(_chain_config(adapters), indent=2, sort_keys=True))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def _module_shapes(adapter_dirs, adapters) -> dict[str, tuple[int, int]]:
    """{module: (in_features, out_features)} over every bake; a module must agree across bakes."""
    shapes = {}
    for path, (_, weights) in zip(adapter_dirs, adapters):
        for m in _modules(weights):
            a, b = weights[f"{m}.lora_A.weight"], weights[f"{m}.lora_B.weight"]
            shape = (a.shape[1], b.shape[0])
            if shapes.setdefault(m, shape) != shape:
                raise AdapterConcatError(path, f"module {m} has shape {shape}, earlier adapters {shapes[m]}")
    return shapes


def _stacked_factors(module: str, shape: tuple[int, int], adapters):
    """(A, B) of one module: the bakes' blocks stacked by rank, B scaled so that s = 1."""
    import torch

    n_in, n_out = shape
    a_blocks, b_blocks = [], []
    for cfg, weights in adapters:
        a = weights.get(f"{module}.lora_A.weight")
        if a is None:
            a_blocks.append(torch.zeros(cfg["r"], n_in, dtype=torch.float32))
            b_blocks.append(torch.zeros(n_out, cfg["r"], dtype=torch.float32))
            continue
        a_blocks.append(a.float())
        b_blocks.append(weights[f"{module}.lora_B.weight"].float() * lora_scale(cfg))  # s = 1
    return torch.cat(a_blocks, 0).contiguous(), torch.cat(b_blocks, 1).contiguous()


def _chain_config(adapters) -> dict:
    """The last bake's adapter_config with r = lora_alpha = the summed ranks, every target module."""
    r_total = sum(cfg["r"] for cfg, _ in adapters)
    config = dict(adapters[-1][0])
    targets = set()
    for cfg, _ in adapters:
        t = cfg.get("target_modules")
        targets |= {t} if isinstance(t, str) else set(t or [])
    config.update(
        r=r_total,
        lora_alpha=r_total,
        use_rslora=False,
        target_modules=sorted(targets),
        lora_dropout=0.0,
        init_lora_weights=True,  # modules named but absent from every bake start at zero
        layers_to_transform=None,
        layers_pattern=None,
    )
    return config
