"""``bgit bake``: stim -> rollout -> train -> commit, each phase through the phase cache.

A :class:`Baker` owns one bake of one input.yml in one repository; its parts live beside it:

    parent.py   the parent model (base, or base + HEAD's adapter), resolved and loaded once
    keys.py     the phase keys (exactly each phase's inputs)
    runner.py   running phases through the cache (and multi-rank waiting)
    commit.py   the bake record, staging, eval, the post-bake hook and the commit

A rerun with unchanged inputs computes nothing, changing only the learning rate re-runs only
training, and an interrupted bake resumes from the last finished phase and checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bgit.config.schema import InputConfig, TargetConfig
from bgit.evaluate import read_record
from bgit.pipeline.commit import commit_bake, make_record
from bgit.pipeline.parent import ParentModel
from bgit.pipeline.phases import PhaseKey
from bgit.pipeline.runner import BakeError, PhaseOutcome, PhaseRunner, PlanEntry, process_rank
from bgit.record import BakeRecord
from bgit.repo.hooks import run_hook
from bgit.util.progress import SILENT, Reporter

__all__ = ["Baker", "BakeError", "BakeResult", "PhaseOutcome", "PlanEntry", "process_rank"]


@dataclass
class BakeResult:
    commit: str | None          # None on ranks > 0 of a multi-process bake: rank 0 commits
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    record: BakeRecord | None = None

    def to_json(self) -> dict:
        metrics = self.record.metrics if self.record else None
        return {"commit": self.commit, "phases": [vars(o) for o in self.outcomes],
                "final_train_kl": metrics.final_train_kl if metrics else None,
                "final_eval_kl": metrics.final_eval_kl if metrics else None,
                "eval_closure": metrics.eval_closure if metrics else None}


class Baker:
    def __init__(self, repo, config: InputConfig, *, backend: str | None = None,
                 reporter: Reporter = SILENT, config_dir: Path | None = None, parent_at: str | None = None):
        if process_rank():  # one progress display and one set of hooks: rank 0's
            reporter = SILENT
        self.repo, self.config, self.reporter = repo, config, reporter
        self.parent = ParentModel(repo, config, reporter, at=parent_at)
        self.runner = PhaseRunner(repo, config, parent=self.parent, backend=backend, reporter=reporter,
                                  config_dir=config_dir)

    def plan(self) -> list[PlanEntry]:
        return self.runner.plan()

    def run_stim(self, target: TargetConfig):
        return self.runner.run_stim(target)

    def run_rollout(self, target: TargetConfig, stim_dir: Path):
        return self.runner.run_rollout(target, stim_dir)

    def close_rollout_backend(self) -> None:
        self.runner.close_rollout_backend()

    def bake(self, message: str | None = None, force: bool = False, parents: Sequence[str] = (),
             merge: dict | None = None) -> BakeResult:
        """``parents`` and ``merge``: the further parents and bake.yml ``merge`` entry of a merge
        bake (bgit.pipeline.merge)."""
        if not process_rank():
            run_hook(self.repo, "pre-bake", {"BGIT_CONFIG": Path(self.config.source).resolve()})
        for notice in self.config.notices:  # keys accepted without effect: never silent
            self.reporter.message(f"notice: {notice}")
        self.runner.cache.clean_temporaries()
        with self.runner.cache.pinned():  # gc keeps every phase this bake touches while it runs
            return self._bake(message, force, parents, merge)

    def _bake(self, message: str | None, force: bool, parents: Sequence[str], merge: dict | None) -> BakeResult:
        runner = self.runner
        targets = runner.trained_targets()
        stim_dirs, rollout_dirs, outcomes = {}, {}, []
        for target in targets:
            stim_dirs[target.name], outcome = runner.run_stim(target)
            outcomes.append(outcome)
        try:
            for target in targets:
                rollout_dirs[target.name], outcome = runner.run_rollout(target, stim_dirs[target.name])
                outcomes.append(outcome)
        finally:
            runner.close_rollout_backend()  # vLLM's engine and memory, before training
        train_key = runner.train_key(rollout_dirs)
        self._refuse_rebake(train_key, force)
        train_dir, outcome = runner.run_train(rollout_dirs, train_key)
        outcomes.append(outcome)
        if process_rank():
            return BakeResult(None, outcomes)
        record = make_record(runner, outcomes, runner.cache.record_at(train_dir))
        record.merge = merge
        phase_dirs = {"stim": stim_dirs, "rollout": rollout_dirs, "train": train_dir}
        commit = commit_bake(self.repo, self.config, self.parent, phase_dirs, record,
                             message or self.config.bake.name, self._dataset_files(targets), self.reporter,
                             parents=parents)
        return BakeResult(commit, outcomes, record)

    def _refuse_rebake(self, train_key: PhaseKey, force: bool) -> None:
        head = self.repo.head_commit()
        if force or head is None:
            return
        record = read_record(self.repo, head)
        if record is not None and record.phase_keys.train == train_key.key:
            raise BakeError(f"this config is already baked at HEAD (train {train_key.short}); "
                            "use --force to commit it again")

    def _dataset_files(self, targets: list[TargetConfig]) -> dict[str, Path]:
        """from_dataset files inside the work tree: inputs of the bake, committed with it."""
        root = self.repo.root.resolve()
        found = {}
        for target in targets:
            for generator in target.generators:
                if generator.type == "from_dataset" and generator.path:
                    path = self.runner.data_path(generator.path).resolve()
                    if path.is_file() and path.is_relative_to(root):
                        found[path.relative_to(root).as_posix()] = path
        return found
