"""Pipeline commands: validate, stim, rollout, bake (and its dry-run plan)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bgit.api._open import RepoLike, open_repo
from bgit.config import ConfigError, ConfigIssue, InputConfig, load_config
from bgit.pipeline.bake import Baker, BakeError, BakeResult, PhaseOutcome, PlanEntry
from bgit.record import read_jsonl
from bgit.util.progress import SILENT, Reporter
from bgit.repo.merge import refuse_during_merge


@dataclass
class ValidateResult:
    file: str
    config: InputConfig | None
    errors: list[ConfigIssue] = field(default_factory=list)
    notices: list[ConfigIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def validate(path: str | os.PathLike = "input.yml") -> ValidateResult:
    """Check an input.yml; problems come back as issues (FILE:LINE: KEY: message), not raised."""
    try:
        config = load_config(path)
    except ConfigError as error:
        return ValidateResult(str(path), None, list(error.issues))
    return ValidateResult(str(path), config, [], list(getattr(config, "notices", [])))


def baker(repo: RepoLike = ".", config: str | os.PathLike | None = None, backend: str | None = None,
          reporter: Reporter = SILENT) -> Baker:
    """A Baker for ``config`` (default: the repository's input.yml)."""
    repo = open_repo(repo, reporter)
    path = Path(config) if config else repo.root / "input.yml"
    return Baker(repo, load_config(path, root=repo.root), backend=backend, reporter=reporter, config_dir=path.parent)


@dataclass
class PhaseRows:
    """One target's stim or rollout phase: where it came from and its rows."""

    target: str
    outcome: PhaseOutcome
    rows: list[dict]


def _targets(b: Baker, name: str | None):
    if name is None:
        return b.config.targets
    try:
        return [b.config.target(name)]
    except KeyError:
        known = ", ".join(t.name for t in b.config.targets)
        raise BakeError(f"unknown target '{name}' (targets: {known})") from None


def stim(repo: RepoLike = ".", config=None, target: str | None = None, reporter: Reporter = SILENT) -> list[PhaseRows]:
    """Generate (or read from the phase cache) the stims of each target."""
    b = baker(repo, config, reporter=reporter)
    out = []
    for t in _targets(b, target):
        stim_dir, outcome = b.run_stim(t)
        out.append(PhaseRows(t.name, outcome, read_jsonl(stim_dir / "stim.jsonl")))
    return out


def rollout(repo: RepoLike = ".", config=None, target: str | None = None, backend: str | None = None,
            reporter: Reporter = SILENT) -> list[PhaseRows]:
    """Sample (or read from the phase cache) the teacher's answers to each target's stims."""
    b = baker(repo, config, backend, reporter)
    out = []
    try:
        for t in _targets(b, target):
            stim_dir, _ = b.run_stim(t)
            rollout_dir, outcome = b.run_rollout(t, stim_dir)
            out.append(PhaseRows(t.name, outcome, read_jsonl(rollout_dir / "rollout.jsonl")))
    finally:
        b.close_rollout_backend()  # vLLM's engine processes
    return out


def bake_plan(repo: RepoLike = ".", config=None) -> list[PlanEntry]:
    """Which phases a bake would run and which are cached (``bgit bake --dry-run``)."""
    return baker(repo, config).plan()


def bake(repo: RepoLike = ".", config=None, message: str | None = None, force: bool = False,
         backend: str | None = None, reporter: Reporter = SILENT) -> BakeResult:
    """stim -> rollout -> train -> eval -> commit; -> the commit and what each phase did.
    Refused during a merge: 'bgit merge --continue' bakes the merge."""

    repo = open_repo(repo, reporter)
    refuse_during_merge(repo)
    return baker(repo, config, backend, reporter).bake(message=message, force=force)
