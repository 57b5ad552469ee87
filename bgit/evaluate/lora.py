"""The effective LoRA delta ΔW = s·B·A of each adapted module, without ever forming ΔW.

For two adapters on the same module (A_i: [r_i, in], B_i: [out, r_i], scales s_i)::

    <ΔW_1, ΔW_2>_F = s_1 s_2 trace((B_1ᵀ B_2)(A_2 A_1ᵀ))      # r_1 x r_2 and r_2 x r_1 products
    ‖ΔW‖_F²       = <ΔW, ΔW>_F
    ‖ΔW_2 − ΔW_1‖² = ‖ΔW_1‖² + ‖ΔW_2‖² − 2<ΔW_1, ΔW_2>

so a diff costs O(r²·(in + out)) per module instead of O(in·out).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bgit.train.lora import lora_scale

_TORCH_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass
class Factor:
    """One adapted module: its factors (float64) and scale."""

    module: str
    a: object  # torch.Tensor [r, in]
    b: object  # torch.Tensor [out, r]
    scale: float


def module_of(key: str) -> tuple[str, str] | None:
    """'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' -> (module, 'A')."""
    match = re.match(r"^(.*)\.lora_([AB])(?:\.[^.]+)?\.weight$", key)
    if not match:
        return None
    return match.group(1).removeprefix("base_model.model."), match.group(2)


def layer_and_kind(module: str) -> tuple[str, str]:
    """('3', 'q_proj') for '...layers.3.self_attn.q_proj'; ('-', name) outside the layers."""
    match = _LAYER.search(module)
    kind = module.rsplit(".", 1)[-1]
    return (match.group(1), kind) if match else ("-", kind)


def decode_tensor(data: bytes, dtype: str, shape):
    import torch

    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"unsupported adapter dtype {dtype}")
    tensor = torch.frombuffer(bytearray(data), dtype=getattr(torch, _TORCH_DTYPES[dtype]))
    return tensor.reshape(tuple(shape)).to(torch.float64)


def factors_from_tensors(tensors: dict, config: dict) -> dict[str, Factor]:
    """{safetensors key: tensor} of a PEFT adapter -> {module: Factor}."""
    halves: dict[str, dict[str, object]] = {}
    for key, tensor in tensors.items():
        parsed = module_of(key)
        if parsed:
            halves.setdefault(parsed[0], {})[parsed[1]] = tensor
    factors = {}
    for module, pair in sorted(halves.items()):
        if "A" in pair and "B" in pair:
            a, b = pair["A"].to(dtype=_f64()), pair["B"].to(dtype=_f64())
            factors[module] = Factor(module, a, b, lora_scale(config, module, a.shape[0]))
    return factors


def _f64():
    import torch

    return torch.float64


def inner(f1: Factor | None, f2: Factor | None) -> float:
    """<ΔW_1, ΔW_2>_F; a missing factor is a zero delta."""
    if f1 is None or f2 is None:
        return 0.0
    small = (f1.b.T @ f2.b) @ (f2.a @ f1.a.T)  # [r1, r2] @ [r2, r1]
    return float(f1.scale * f2.scale * small.trace())


def norm(f: Factor | None) -> float:
    return math.sqrt(max(inner(f, f), 0.0))


def dense_delta(f: Factor):
    """ΔW itself — for tests and tiny models only."""
    return f.scale * (f.b @ f.a)
