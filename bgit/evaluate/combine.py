"""Combining two bakes' adapters without training (``bgit merge --strategy weights``), through
PEFT's ``add_weighted_adapter``.

    linear     A and B factors mixed separately (PEFT's "linear"; needs equal ranks)
    cat        ranks concatenated: ΔW = w1·ΔW1 + w2·ΔW2 exactly (rank r1 + r2)
    ties       TIES-merging of the factors (trim to ``density``, elect signs; equal ranks)
    dare_ties  DARE (random drop to ``density``, rescale) then TIES; seeded (equal ranks)

The result is a PEFT adapter directory (adapter_config.json, adapter_model.safetensors) that
loads with ``PeftModel.from_pretrained`` like any bake's.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from bgit.evaluate.bakes import Bake
from bgit.evaluate.errors import BaseModelMismatchError, EvaluateError
from bgit.evaluate.models import load_base, with_adapter

COMBINATIONS = ("linear", "cat", "ties", "dare_ties")
EQUAL_RANKS = ("linear", "ties", "dare_ties")
DEFAULT_DENSITY = 0.5


class CombineError(EvaluateError):
    pass


def check_combination(combination: str, weights, density: float | None) -> float | None:
    """-> the density to use (None where the combination takes none); CombineError otherwise."""
    if combination not in COMBINATIONS:
        raise CombineError(f"unknown combination '{combination}' (choose from {', '.join(COMBINATIONS)})")
    if len(weights) != 2 or any(w <= 0 for w in weights):
        raise CombineError(f"--weights needs two positive numbers, one per side, got {','.join(map(str, weights))}")
    if combination in ("ties", "dare_ties"):
        density = DEFAULT_DENSITY if density is None else density
        if not 0 < density <= 1:
            raise CombineError(f"--density must be in (0, 1], got {density}")
        return density
    if density is not None:
        raise CombineError(f"--density applies to ties and dare_ties, not to {combination}")
    return None


def check_adapters(ours: Bake, theirs: Bake, combination: str, weights, density: float | None) -> float | None:
    """Everything that can be checked before loading a model; -> the density to use."""
    density = check_combination(combination, weights, density)
    if (ours.base_model_name, ours.base_fingerprint) != (theirs.base_model_name, theirs.base_fingerprint):
        raise BaseModelMismatchError(ours.base_model_name or "?", theirs.base_model_name or "?")
    ranks = (_rank(ours), _rank(theirs))
    if combination in EQUAL_RANKS and ranks[0] != ranks[1]:
        raise CombineError(f"the adapters have ranks {ranks[0]} and {ranks[1]}: {combination} needs equal "
                           "ranks (use --combination cat)")
    return density


def _rank(bake: Bake) -> int:
    config = bake.adapter_config()
    return max([int(config.get("r", 0)), *map(int, (config.get("rank_pattern") or {}).values())])


def combine_adapters(ours: Bake, theirs: Bake, out: Path, combination: str = "linear",
                     weights: tuple[float, float] = (0.5, 0.5), density: float | None = None,
                     seed: int = 0) -> Path:
    """Write the combination of the two bakes' adapters to ``out`` (a new directory)."""
    import torch

    density = check_adapters(ours, theirs, combination, weights, density)
    base, _, _ = load_base(ours, device="cpu", dtype="float32")
    model = with_adapter(base, ours.adapter_dir(), name="ours")
    model.load_adapter(str(theirs.adapter_dir()), adapter_name="theirs", is_trainable=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.add_weighted_adapter(["ours", "theirs"], [float(w) for w in weights], "merged",
                                   combination_type=combination, density=density)
    tmp = Path(tempfile.mkdtemp(prefix=".combine-", dir=Path(out).parent))
    try:
        model.save_pretrained(str(tmp), selected_adapters=["merged"], safe_serialization=True)
        saved = tmp / "merged"
        config = json.loads((saved / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = ours.adapter_config().get("base_model_name_or_path")
        (saved / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.move(str(saved / name), str(Path(out) / name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Path(out)
