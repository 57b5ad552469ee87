"""``bgit diff``: config, datasets, adapter weights and (optionally) behaviour between two commits."""

from __future__ import annotations

from bgit.evaluate.bakes import open_bake, open_commit
from bgit.evaluate.closure import behaviour_kl
from bgit.evaluate.datasets import config_changes, dataset_changes, metric_changes
from bgit.evaluate.results import DiffResult, RefPoint
from bgit.evaluate.weights import weight_diff


def diff_bakes(repo, ref_a: str = "HEAD~1", ref_b: str = "HEAD", behaviour: bool = False,
               device: str | None = None) -> DiffResult:
    a, b = open_commit(repo, ref_a), open_commit(repo, ref_b)
    result = DiffResult(RefPoint(ref_a, a.sha), RefPoint(ref_b, b.sha), config_changes(a, b),
                        dataset_changes(a, b), metric_changes(a, b), weight_diff(a, b))
    if behaviour:
        result.behaviour = behaviour_kl(a, open_bake(repo, ref_b), device=device)
    return result
