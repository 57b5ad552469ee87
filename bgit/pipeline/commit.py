"""Committing a bake: its record (bake.yml), the staged tree, eval on held-out stims, the
post-bake hook's veto, then one commit (DESIGN §3.2) and the eval note.

Order matters for "nothing is lost": everything is staged in a temporary directory and
evaluated before the commit; the commit itself is repo.commit_files (payloads, then the tree
and commit, then one compare-and-swap ref update); the eval note is written after the commit
it annotates.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from bgit import __version__
from bgit.config import config_to_dict
from bgit.config.schema import InputConfig
from bgit.evaluate import StagedBake, evaluate_bake, write_eval
from bgit.pipeline.parent import ParentModel
from bgit.pipeline.runner import PhaseOutcome, PhaseRunner, process_world
from bgit.record import (ADAPTER_DIR, BAKE_RECORD, INPUT_YML, METRICS, BakeMetrics, BakeRecord, ModelRef,
                         ParentRef, PhaseKeys, rollout_path, stim_path)
from bgit.repo.hooks import run_hook
from bgit.store.writers import link_or_copy
from bgit.util.files import write_atomic
from bgit.util.progress import SILENT, Reporter


def make_record(runner: PhaseRunner, outcomes: list[PhaseOutcome], train_record: dict) -> BakeRecord:
    """bake.yml of a bake whose phases produced ``outcomes``; ``train_record`` is the train phase's."""
    config, info = runner.config, runner.parent.info
    keys = PhaseKeys()
    for o in outcomes:
        if o.phase == "train":
            keys.train = o.key
        else:
            getattr(keys, o.phase)[o.target] = o.key
    return BakeRecord(
        base_model=ModelRef(info.base.name, info.base.fingerprint, getattr(info.base, "revision", None)),
        parent=ParentRef(info.mode, info.commit, info.adapter_digest),
        targets=[t.name for t in runner.trained_targets()],
        hyperparameters=config_to_dict(config.bake),
        seed=config.bake.seed,
        phase_keys=keys,
        timings={o.label: round(runner.phase_seconds(o), 2) for o in outcomes},
        cached=[o.label for o in outcomes if o.cached],
        tokens={"rollout": sum(o.tokens for o in outcomes if o.phase == "rollout"),
                "train": train_record.get("tokens", 0)},
        trajectories={"train": train_record.get("train_trajectories"),
                      "eval": train_record.get("eval_trajectories")},
        eval_stims=train_record.get("eval_stims", {}),
        train_resumed_from_epoch=train_record.get("resumed_from_epoch", 0),
        metrics=BakeMetrics(train_record.get("final_train_kl"), train_record.get("final_eval_kl")),
        versions=_versions(),
        device=_device_name(),
    )


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"bgit": __version__, "torch": str(torch.__version__), "transformers": str(transformers.__version__),
            "peft": str(peft.__version__), "python": platform.python_version()}


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    world = process_world()
    return f"{name} x {world} processes" if world > 1 else name


def _stage(staging: Path, config: InputConfig, parent: ParentModel, phase_dirs: dict, record: BakeRecord,
           dataset_files: dict[str, Path]) -> dict[str, Path]:
    """The bake's tree as {tree path: file}, in ``staging`` where post-bake hooks find it."""
    files = {INPUT_YML: shutil.copy(Path(config.source), staging / INPUT_YML), **dataset_files}
    for name, path in phase_dirs["stim"].items():
        files[stim_path(name)] = path / "stim.jsonl"
    for name, path in phase_dirs["rollout"].items():
        files[rollout_path(name)] = path / "rollout.jsonl"
    adapter_dir = staging / ADAPTER_DIR
    trained = phase_dirs["train"] / "adapter"
    if parent.info.commit:  # sequential baking: the committed adapter is the whole chain
        from bgit.train import concat_adapters
        concat_adapters([parent.adapter_dir(), trained], adapter_dir)
    else:
        shutil.copytree(trained, adapter_dir, copy_function=link_or_copy)
    for path in sorted(adapter_dir.iterdir()):
        if path.is_file():
            files[f"{ADAPTER_DIR}/{path.name}"] = path
    files[METRICS] = phase_dirs["train"] / "metrics.jsonl"
    files[BAKE_RECORD] = write_atomic(staging / BAKE_RECORD, record.to_yaml())
    return files


def commit_bake(repo, config: InputConfig, parent: ParentModel, phase_dirs: dict, record: BakeRecord,
                message: str, dataset_files: dict[str, Path], reporter: Reporter = SILENT,
                parents: Sequence[str] = ()) -> str:
    """Stage, evaluate, let post-bake veto, commit; -> the commit id. ``phase_dirs`` =
    {"stim": {target: dir}, "rollout": {target: dir}, "train": dir}; ``parents``: further
    parents of a merge commit (see repo.commit_files)."""
    with staging_dir(repo) as staging:
        files = _stage(staging, config, parent, phase_dirs, record, dataset_files)
        return evaluate_and_commit(repo, staging, files, record, message, reporter, parents=parents,
                                   replace_dirs=("targets", ADAPTER_DIR))


@contextmanager
def staging_dir(repo) -> Iterator[Path]:
    """A temporary directory inside the repository (same file system as the store)."""
    (repo.bgit_dir / "staging").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=repo.bgit_dir / "staging") as staging:
        yield Path(staging)


def evaluate_and_commit(repo, staging: Path, files: dict[str, Path], record: BakeRecord, message: str,
                        reporter: Reporter = SILENT, parents: Sequence[str] = (),
                        replace_dirs: Sequence[str] = ("targets", ADAPTER_DIR)) -> str:
    """Eval on the held-out stims bake.yml names (its closure goes into bake.yml), the
    post-bake hook's veto, the commit, then the eval note. ``files`` come from ``staging``."""
    results = None
    if any((record.eval_stims or {}).values()):
        results = evaluate_bake(StagedBake(files, record, repo=repo), reporter=reporter)
        record.metrics.eval_closure = results.closure
        write_atomic(staging / BAKE_RECORD, record.to_yaml())
        write_atomic(staging / "eval.json", _json(results.to_json()))
    run_hook(repo, "post-bake", {
        "BGIT_BAKE_DIR": staging,
        "BGIT_EVAL_CLOSURE": results.closure if results else None,
        "BGIT_FINAL_EVAL_KL": record.metrics.final_eval_kl,
    })
    commit = repo.commit_files(files, message, replace_dirs=replace_dirs, parents=parents)
    if results is not None:
        results.commit = commit
        write_eval(repo, commit, results)
    return commit


def _json(data) -> str:
    import json

    return json.dumps(data, indent=1, sort_keys=True)
