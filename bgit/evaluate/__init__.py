"""Using bakes: diffs (config, datasets, LoRA deltas, behaviour), KL closure evals kept as git
notes, chat/generation with a scaled adapter, exports and training curves.

    from bgit.evaluate import open_bake, evaluate_bake, write_eval, read_eval, diff_bakes
    bake = open_bake(repo, "HEAD")
    results = evaluate_bake(bake)          # {'closure', 'kl_prompted_base', ...}
    write_eval(repo, bake.commit, results) # refs/notes/bgit-eval
    read_eval(repo, commit) -> dict | None # for bgit log / show
    evaluate_bake(StagedBake(files, record))  # before the commit: files = {tree path: file}

Heavy imports (torch, transformers, peft, matplotlib) happen inside the functions.
"""

from bgit.evaluate.bakes import Bake, StagedBake, open_bake, open_commit
from bgit.evaluate.closure import behaviour_kl, evaluate_bake, read_stims_file
from bgit.evaluate.diff import diff_bakes
from bgit.evaluate.errors import (
    BadStimsFileError,
    BaseModelMismatchError,
    EvaluateError,
    ExportError,
    NoEvalStimsError,
    NotABakeError,
)
from bgit.evaluate.export import export_bake
from bgit.evaluate.notes import NOTES_REF, eval_summary, read_eval, write_eval

__all__ = [
    "NOTES_REF",
    "BadStimsFileError",
    "Bake",
    "StagedBake",
    "BaseModelMismatchError",
    "EvaluateError",
    "ExportError",
    "NoEvalStimsError",
    "NotABakeError",
    "behaviour_kl",
    "diff_bakes",
    "eval_summary",
    "evaluate_bake",
    "export_bake",
    "open_bake",
    "open_commit",
    "read_eval",
    "read_stims_file",
    "write_eval",
]
