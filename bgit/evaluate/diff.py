"""``bgit diff``: config, datasets, adapter weights and (optionally) behaviour between two commits."""

from __future__ import annotations

from bgit.evaluate.bakes import Bake, open_bake, open_commit
from bgit.evaluate.closure import behaviour_kl
from bgit.evaluate.datasets import config_changes, dataset_changes, metric_changes
from bgit.evaluate.results import DiffResult, RefPoint
from bgit.evaluate.weights import weight_diff


def diff_bakes(repo, ref_a: str = "HEAD~1", ref_b: str = "HEAD", behaviour: bool = False,
               device: str | None = None) -> DiffResult:
    return diff_views(open_commit(repo, ref_a), open_commit(repo, ref_b), behaviour=behaviour, device=device)


def diff_views(a: Bake, b: Bake, behaviour: bool = False, device: str | None = None,
               base: str | None = None) -> DiffResult:
    """Two bakes of any kind: commits, the work tree (work_tree_bake) or nothing (empty_bake).
    ``base``: the base model for --behaviour when bake.yml does not name one."""
    result = DiffResult(RefPoint(a.ref, a.sha), RefPoint(b.ref, b.sha), config_changes(a, b), dataset_changes(a, b),
                        metric_changes(a, b), weight_diff(a, b))
    if behaviour:
        if b.commit is not None:
            b = open_bake(b.repo, b.sha, require_record=False, base=base)
        if a.commit is not None and a.has_adapter():
            a = open_bake(a.repo, a.sha, require_record=False, base=base)
        result.behaviour = behaviour_kl(a, b, device=device)
    return result
