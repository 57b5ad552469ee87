"""A bake's training curve (metrics.jsonl) as a terminal sparkline chart and as a PNG.

Rows look like ``{"step", "epoch", "lr", "train_kl", "tokens", "tokens_per_s"}``; eval rows
carry ``eval_kl``. Missing keys are tolerated: a row without ``step`` takes its position.
"""

from __future__ import annotations

import math
from pathlib import Path

from bgit.evaluate.bakes import Bake
from bgit.evaluate.errors import EvaluateError

BLOCKS = "▁▂▃▄▅▆▇█"


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def read_metrics(bake: Bake) -> dict:
    """-> {'train': [(step, kl)], 'eval': [(step, epoch, kl)], 'rows': n, 'last': {...}}."""
    rows = bake.read_jsonl("metrics.jsonl")
    train, evals = [], []
    last_step = 0
    for position, row in enumerate(rows):
        step = _number(row.get("step"))
        step = last_step if step is None else step
        last_step = step
        if _number(row.get("train_kl")) is not None:
            train.append((step if row.get("step") is not None else float(position), row["train_kl"]))
        if _number(row.get("eval_kl")) is not None:
            evals.append((step, _number(row.get("epoch")), row["eval_kl"]))
    last = rows[-1] if rows else {}
    return {"train": train, "eval": evals, "rows": len(rows),
            "tokens": max((r.get("tokens", 0) for r in rows if _number(r.get("tokens")) is not None), default=None),
            "last": last, "final": vars(bake.record.metrics)}


def sparkline(values: list[float], width: int = 60) -> str:
    """Values (resampled to at most ``width`` buckets by averaging) as block characters."""
    if not values:
        return ""
    if len(values) > width:
        buckets = []
        for i in range(width):
            lo, hi = i * len(values) // width, max((i + 1) * len(values) // width, i * len(values) // width + 1)
            chunk = values[lo:hi]
            buckets.append(sum(chunk) / len(chunk))
        values = buckets
    low, high = min(values), max(values)
    span = high - low
    if span <= 0:
        return BLOCKS[len(BLOCKS) // 2] * len(values)
    return "".join(BLOCKS[min(int((v - low) / span * (len(BLOCKS) - 1) + 0.5), len(BLOCKS) - 1)] for v in values)


def render_chart(metrics: dict, width: int = 60) -> str:
    lines = []
    train = [kl for _, kl in metrics["train"]]
    if train:
        lines.append(f"train_kl  {sparkline(train, width)}")
        lines.append(f"          {len(train)} steps  first {train[0]:.4g}  min {min(train):.4g}  "
                     f"last {train[-1]:.4g}")
    evals = metrics["eval"]
    if evals:
        values = [kl for _, _, kl in evals]
        lines.append(f"eval_kl   {sparkline(values, width)}")
        for step, epoch, kl in evals:
            where = f"epoch {epoch:g}" if epoch is not None else f"step {step:g}"
            lines.append(f"          {where}: {kl:.4g}")
    if not lines:
        lines.append("(no train_kl or eval_kl rows in metrics.jsonl)")
    return "\n".join(lines)


def plot_metrics(metrics: dict, path, title: str = "") -> Path:
    """KL curve as a PNG (matplotlib, Agg backend)."""
    if not metrics["train"] and not metrics["eval"]:
        raise EvaluateError("nothing to plot: metrics.jsonl has no train_kl or eval_kl rows")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        if metrics["train"]:
            axis.plot([s for s, _ in metrics["train"]], [k for _, k in metrics["train"]], label="train KL")
        if metrics["eval"]:
            axis.plot([s for s, _, _ in metrics["eval"]], [k for _, _, k in metrics["eval"]], "o-", label="eval KL")
        axis.set_xlabel("step")
        axis.set_ylabel("KL per response token (nats)")
        axis.set_title(title or "KL during baking")
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        figure.savefig(str(path), format="png")
    finally:
        plt.close(figure)
    return Path(path)
