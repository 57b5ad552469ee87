"""``bgit merge --strategy weights``: the two sides' adapters combined without training, committed
with a bake.yml saying how, evaluated on both sides' held-out stims like any bake."""

from __future__ import annotations

from bgit.evaluate import open_bake
from bgit.evaluate.combine import check_adapters, combine_adapters
from bgit.pipeline.commit import _device_name, _versions, evaluate_and_commit, staging_dir
from bgit.record import (ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, BAKE_RECORD, INPUT_YML, TARGETS_DIR,
                         BakeRecord, ParentRef, PhaseKeys)
from bgit.repo.sync import stage_zero
from bgit.util.files import write_atomic
from bgit.util.progress import SILENT, Reporter


def combined_record(ours, theirs, merge: dict) -> BakeRecord:
    """bake.yml of a combination: both sides' targets, held-out stims and phase keys."""
    targets = ours.record.targets + [t for t in theirs.record.targets if t not in ours.record.targets]
    eval_stims = None
    if ours.record.eval_stims is not None or theirs.record.eval_stims is not None:
        eval_stims = {**(theirs.record.eval_stims or {}), **(ours.record.eval_stims or {})}
    keys = PhaseKeys(stim={**theirs.record.phase_keys.stim, **ours.record.phase_keys.stim},
                     rollout={**theirs.record.phase_keys.rollout, **ours.record.phase_keys.rollout})
    return BakeRecord(base_model=ours.record.base_model, parent=ParentRef("base"), targets=targets,
                      seed=merge.get("seed", 0), phase_keys=keys, eval_stims=eval_stims, merge=merge,
                      versions=_versions(), device=_device_name())


def commit_combined(repo, state, options, reporter: Reporter = SILENT) -> str:
    """Combine, evaluate, commit (parents HEAD and MERGE_HEAD); -> the commit id."""
    ours, theirs = open_bake(repo, state.head), open_bake(repo, state.theirs)
    density = check_adapters(ours, theirs, options.combination, options.weights, options.density)
    merge = {"strategy": "weights", "combination": options.combination, "weights": list(options.weights),
             "density": density, "seed": options.seed, "ours": state.head, "theirs": state.theirs,
             "base": state.options.get("base")}
    with staging_dir(repo) as staging:
        reporter.message(f"combining the adapters ({options.combination}, weights "
                         f"{options.weights[0]:g},{options.weights[1]:g})")
        adapter = combine_adapters(ours, theirs, staging / ADAPTER_DIR, options.combination, options.weights,
                                   density, options.seed)
        record = combined_record(ours, theirs, merge)
        files = {ADAPTER_CONFIG: adapter / "adapter_config.json", ADAPTER_WEIGHTS: adapter / "adapter_model.safetensors",
                 BAKE_RECORD: write_atomic(staging / BAKE_RECORD, record.to_yaml())}
        if (repo.root / INPUT_YML).is_file():
            files[INPUT_YML] = repo.root / INPUT_YML
        index = repo.git.index
        index.read()
        for path in stage_zero(index):   # the merged datasets, which eval reads
            if path.startswith(TARGETS_DIR + "/"):
                files[path] = repo.root / path
        return evaluate_and_commit(repo, staging, files, record, state.message, reporter,
                                   parents=[state.theirs], replace_dirs=(ADAPTER_DIR,))


def check_weights_merge(repo, ours: str, theirs: str, options) -> None:
    """Before a weights merge starts: both sides are bakes whose adapters can be combined."""
    check_adapters(open_bake(repo, ours), open_bake(repo, theirs), options.combination, options.weights,
                   options.density)
