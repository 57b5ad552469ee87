"""Using bakes: diffs (config, datasets, LoRA deltas, behaviour), KL closure evals kept as git
notes, chat/generation with a scaled adapter, exports and training curves.

    from bgit.evaluate import open_bake, evaluate_bake, write_eval, read_eval, diff_bakes
    bake = open_bake(repo, "HEAD")
    results = evaluate_bake(bake)          # EvalResult(closure, kl_prompted_base, ...)
    write_eval(repo, bake.commit, results) # refs/notes/bgit-eval
    read_eval(repo, commit) -> EvalResult | None   # for bgit log / show
    evaluate_bake(StagedBake(files, record, repo=repo))  # before the commit: {tree path: file}

Heavy imports (torch, transformers, peft, matplotlib) happen inside the functions.
"""

from bgit.evaluate.bakes import Bake, StagedBake, empty_bake, open_bake, open_commit, read_record, work_tree_bake
from bgit.evaluate.closure import behaviour_kl, evaluate_bake, read_stims_file
from bgit.evaluate.diff import diff_bakes, diff_views
from bgit.evaluate.errors import (
    BadStimsFileError,
    BaseModelMismatchError,
    EvaluateError,
    ExportError,
    NoBaseModelError,
    NoEvalStimsError,
    NotABakeError,
)
from bgit.evaluate.export import export_bake
from bgit.evaluate.notes import NOTES_REF, read_eval, write_eval
from bgit.evaluate.results import BehaviourResult, ConfigChange, DatasetChange, DiffResult, EvalResult, KlSums

__all__ = [
    "NOTES_REF",
    "BadStimsFileError",
    "Bake",
    "StagedBake",
    "BaseModelMismatchError",
    "EvaluateError",
    "ExportError",
    "NoBaseModelError",
    "NoEvalStimsError",
    "diff_views",
    "empty_bake",
    "work_tree_bake",
    "NotABakeError",
    "behaviour_kl",
    "diff_bakes",
    "read_record",
    "BehaviourResult", "ConfigChange", "DatasetChange", "DiffResult", "EvalResult", "KlSums",
    "evaluate_bake",
    "export_bake",
    "open_bake",
    "open_commit",
    "read_eval",
    "read_stims_file",
    "write_eval",
]
