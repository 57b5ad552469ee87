"""Per-tensor and per-layer changes of the effective LoRA delta between two bakes.

Tensors are read piece by piece from the store through the adapter's manifest; modules
whose A and B pieces are identical in both manifests are known to be unchanged without
comparing anything but object ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bgit.evaluate.bakes import ADAPTER_WEIGHTS, Bake
from bgit.evaluate.lora import Factor, decode_tensor, factors_from_tensors, inner, layer_and_kind, module_of


@dataclass
class ModuleDelta:
    module: str
    layer: str
    kind: str
    norm_a: float
    norm_b: float
    diff_norm: float        # ‖ΔW_B − ΔW_A‖
    relative: float | None  # diff_norm / norm_a; None when A has no delta there
    cosine: float | None    # None when either delta is zero
    changed: bool           # the stored factors differ (by object id)


@dataclass
class LayerDelta:
    layer: str
    norm_a: float
    norm_b: float
    diff_norm: float
    relative: float | None
    cosine: float | None
    modules: int
    changed: int


def adapter_factors(bake: Bake) -> tuple[dict[str, Factor], dict[str, tuple[str, ...]]]:
    """-> ({module: Factor}, {module: object ids of its A and B tensors}) of a bake's adapter."""
    config = bake.adapter_config()
    manifest = bake.manifest(ADAPTER_WEIGHTS)
    if manifest is None:  # a small adapter kept as a plain git blob
        from safetensors.torch import load

        data = bake.read(ADAPTER_WEIGHTS)
        tensors = load(data) if data else {}
        return factors_from_tensors(tensors, config), {}
    store = bake.repo.store
    tensors, pieces = {}, {}
    for entry in manifest.tensors:
        parsed = module_of(entry.name)
        if parsed is None:
            continue
        data = b"".join(store.get_bytes(oid) for oid in entry.pieces)
        tensors[entry.name] = decode_tensor(data, entry.dtype, entry.shape)
        pieces[parsed[0]] = pieces.get(parsed[0], ()) + tuple(entry.pieces)
    return factors_from_tensors(tensors, config), pieces


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def compare_factors(fa: dict[str, Factor], fb: dict[str, Factor],
                    pieces_a: dict | None = None, pieces_b: dict | None = None) -> list[ModuleDelta]:
    deltas = []
    for module in sorted(set(fa) | set(fb), key=_module_order):
        a, b = fa.get(module), fb.get(module)
        same_pieces = bool(pieces_a and pieces_b and module in pieces_a and pieces_a.get(module) == pieces_b.get(module)
                           and a is not None and b is not None and a.scale == b.scale) or _same_factors(a, b)
        aa = inner(a, a)
        bb = aa if same_pieces else inner(b, b)
        ab = aa if same_pieces else inner(a, b)
        diff = math.sqrt(max(aa + bb - 2 * ab, 0.0))
        if same_pieces:
            diff = 0.0
        na, nb = math.sqrt(max(aa, 0.0)), math.sqrt(max(bb, 0.0))
        layer, kind = layer_and_kind(module)
        deltas.append(ModuleDelta(module, layer, kind, na, nb, diff, _ratio(diff, na), _ratio(ab, na * nb),
                                  changed=not same_pieces))
    return deltas


def _same_factors(a: Factor | None, b: Factor | None) -> bool:
    """Identical tensors where no object ids tell (a work-tree adapter has no manifest)."""
    import torch

    return (a is not None and b is not None and a.scale == b.scale and a.a.shape == b.a.shape
            and a.b.shape == b.b.shape and torch.equal(a.a, b.a) and torch.equal(a.b, b.b))


def _module_order(module: str):
    layer, kind = layer_and_kind(module)
    return (int(layer) if layer.isdigit() else 1 << 30, module)


def per_layer(deltas: list[ModuleDelta]) -> list[LayerDelta]:
    """Each layer's modules seen as one concatenated vector."""
    groups: dict[str, list[ModuleDelta]] = {}
    for d in deltas:
        groups.setdefault(d.layer, []).append(d)
    layers = []
    for layer, items in groups.items():
        aa = sum(d.norm_a ** 2 for d in items)
        bb = sum(d.norm_b ** 2 for d in items)
        diff2 = sum(d.diff_norm ** 2 for d in items)
        ab = (aa + bb - diff2) / 2
        na, nb = math.sqrt(aa), math.sqrt(bb)
        layers.append(LayerDelta(layer, na, nb, math.sqrt(diff2), _ratio(math.sqrt(diff2), na),
                                 _ratio(ab, na * nb), len(items), sum(d.changed for d in items)))
    return layers


@dataclass
class WeightsDiff:
    modules: list[ModuleDelta]
    layers: list[LayerDelta]
    total: LayerDelta | None    # every module seen as one vector; None without adapters


def weight_diff(a: Bake, b: Bake) -> WeightsDiff:
    """Module, layer and total deltas between the adapters of a and b."""
    fa, pa = adapter_factors(a) if a.has_adapter() else ({}, {})
    fb, pb = adapter_factors(b) if b.has_adapter() else ({}, {})
    modules = compare_factors(fa, fb, pa, pb)
    layers = per_layer(modules)
    total = per_layer([ModuleDelta(d.module, "all", d.kind, d.norm_a, d.norm_b, d.diff_norm, d.relative,
                                   d.cosine, d.changed) for d in modules])
    return WeightsDiff(modules, layers, total[0] if total else None)
