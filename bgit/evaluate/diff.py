"""``bgit diff``: config, datasets, adapter weights and (optionally) behaviour between two commits."""

from __future__ import annotations

from bgit.evaluate.bakes import open_commit
from bgit.evaluate.datasets import config_changes, dataset_changes, metric_changes
from bgit.evaluate.weights import weight_diff


def diff_bakes(repo, ref_a: str = "HEAD~1", ref_b: str = "HEAD", behaviour: bool = False,
               device: str | None = None) -> dict:
    a, b = open_commit(repo, ref_a), open_commit(repo, ref_b)
    result = {
        "a": {"ref": ref_a, "commit": a.sha}, "b": {"ref": ref_b, "commit": b.sha},
        "config": config_changes(a, b),
        "datasets": dataset_changes(a, b),
        "metrics": metric_changes(a, b),
        "weights": weight_diff(a, b),
    }
    if behaviour:
        from bgit.evaluate.bakes import open_bake
        from bgit.evaluate.closure import behaviour_kl

        result["behaviour"] = behaviour_kl(a, open_bake(repo, ref_b), device=device)
    return result
