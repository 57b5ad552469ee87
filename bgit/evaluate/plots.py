"""Heatmap of a weight diff: rows = layers, columns = module types, value = relative change."""

from __future__ import annotations

from pathlib import Path

from bgit.evaluate.errors import EvaluateError
from bgit.evaluate.weights import ModuleDelta


def heatmap_grid(modules: list[ModuleDelta]) -> tuple[list[str], list[str], list[list[float | None]]]:
    layers = sorted({m.layer for m in modules}, key=lambda x: (not x.isdigit(), int(x) if x.isdigit() else 0, x))
    kinds = sorted({m.kind for m in modules})
    grid = [[None] * len(kinds) for _ in layers]
    for m in modules:
        grid[layers.index(m.layer)][kinds.index(m.kind)] = m.relative
    return layers, kinds, grid


def plot_weight_heatmap(modules: list[ModuleDelta], path, title: str = "") -> Path:
    if not modules:
        raise EvaluateError("nothing to plot: neither commit has adapter weights")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    layers, kinds, grid = heatmap_grid(modules)
    values = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
    figure, axis = plt.subplots(figsize=(1.2 + 0.9 * len(kinds), 1.5 + 0.3 * len(layers)), dpi=100)
    try:
        image = axis.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis")
        axis.set_xticks(range(len(kinds)), kinds, rotation=45, ha="right")
        axis.set_yticks(range(len(layers)), layers)
        axis.set_xlabel("module")
        axis.set_ylabel("layer")
        axis.set_title(title or "relative change ‖ΔW_B − ΔW_A‖ / ‖ΔW_A‖")
        figure.colorbar(image, ax=axis)
        figure.tight_layout()
        figure.savefig(str(path), format="png")
    finally:
        plt.close(figure)
    return Path(path)
