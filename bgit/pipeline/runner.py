"""Running the phases of a bake through the phase cache: stim, rollout, train.

Each ``run_*`` returns ``(phase directory, PhaseOutcome)``: from the cache when a phase with
the same key has finished before, else computed and sealed into the cache. Under a
distributed launcher only rank 0 samples; the other ranks wait for its sealed phases and
train alongside it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from bgit.config import resolve_path
from bgit.config.schema import InputConfig, TargetConfig
from bgit.errors import BgitError
from bgit.pipeline import keys
from bgit.pipeline.augment import augment_stims
from bgit.pipeline.dataset import dataset_weights, training_data
from bgit.pipeline.parent import ParentModel
from bgit.pipeline.phases import PhaseCache, PhaseKey
from bgit.pipeline.rollout import make_backend
from bgit.record import read_jsonl, write_jsonl
from bgit.train.distributed import Launch, bind_device
from bgit.util.files import hash_file, hash_tree
from bgit.util.progress import SILENT, Reporter

RANK_ZERO_TIMEOUT = 6 * 3600


class BakeError(BgitError):
    pass


@dataclass
class PhaseOutcome:
    phase: str
    target: str | None
    key: str
    cached: bool
    seconds: float = 0.0
    tokens: int = 0

    @property
    def label(self) -> str:
        return f"{self.phase}[{self.target}]" if self.target else self.phase


@dataclass
class PlanEntry:
    phase: str
    target: str | None
    key: str | None     # None: not computable yet (an upstream phase must run first)
    cached: bool


# -- several ranks (torchrun / deepspeed launchers) -----------------------------------------
# Rank 0 alone computes stim and rollout (the others wait for its sealed phases), seals the
# train phase and commits; every rank trains (bgit.train.distributed).


def process_rank() -> int:
    """This process's rank under a distributed launcher (deepspeed/torchrun); 0 alone."""
    return Launch.from_env().rank


def process_world() -> int:
    """How many processes the launcher started (1 alone)."""
    return Launch.from_env().world


def _checkpoint_epoch(path: str | None) -> int:
    """0, or the epoch of the checkpoint ('.../epoch-0003') a training run resumed from."""
    return int(Path(path).name.split("-")[-1]) if path else 0


def rollout_stims(target: TargetConfig, stims: list[dict]) -> list[dict]:
    """Stim rows with their generator's own rollout settings, as backends read them:
    ``max_tokens`` (hardcoded/from_dataset generators that set one) and ``conditioned``
    (rollout_with_conditioned). Rows without a generator index (older phases) get none."""
    out = []
    for stim in stims:
        index = stim.get("generator_index")
        generator = target.generators[index] if isinstance(index, int) and 0 <= index < len(target.generators) \
            else None
        stim = dict(stim)
        if generator is not None and generator.rollout_max_tokens() is not None:
            stim["max_tokens"] = generator.rollout_max_tokens()
        if generator is not None and generator.rollout_with_conditioned:
            stim["conditioned"] = True
        out.append(stim)
    return out


class PhaseRunner:
    def __init__(self, repo, config: InputConfig, *, parent: ParentModel, backend: str | None = None,
                 reporter: Reporter = SILENT, config_dir: Path | None = None):
        self.repo, self.config, self.parent = repo, config, parent
        self.backend, self.reporter = backend, reporter
        self.config_dir = Path(config_dir) if config_dir else repo.root
        self.cache = PhaseCache(repo.bgit_dir / "phases")
        self._rollout_backend = None   # built when a rollout first runs, closed before training

    # -- the rollout backend: built from the teacher's source, never from a loaded model --

    def rollout_backend(self):
        """One backend for every target; the HF one shares the parent model with training."""
        if self._rollout_backend is None:
            self._rollout_backend = make_backend(self.backend, self.parent.teacher_source(), load_hf=self.parent.load)
        return self._rollout_backend

    def close_rollout_backend(self) -> None:
        """Free the backend's engine (vLLM's processes and memory) before training."""
        if self._rollout_backend is not None:
            self._rollout_backend.close()
            self._rollout_backend = None

    # -- keys -------------------------------------------------------------------------

    def data_path(self, path: str, key: str = "from_dataset path") -> Path:
        """A file the config names, inside the repository (checked again right before each read:
        a link may have been swapped since validation; DESIGN §5)."""
        return resolve_path(self.config, path, root=self.repo.root, key=key)

    def stim_key(self, target: TargetConfig) -> PhaseKey:
        from bgit.pipeline.named_datasets import named_digest

        return keys.stim_key(self.config, target, fingerprint=lambda name: self.parent.resolve(name).fingerprint,
                             data_path=self.data_path, dataset_digest=named_digest)

    def rollout_key(self, target: TargetConfig, stim_dir: Path) -> PhaseKey:
        return keys.rollout_key(self.config, target, self.digest(stim_dir), self.parent.info.fingerprint,
                                sampler=self.parent.sampler_fingerprint(target))

    def train_key(self, rollout_dirs: dict[str, Path]) -> PhaseKey:
        digests = {name: self.digest(path) for name, path in rollout_dirs.items()}
        # micro_batch_size is per process: the number of processes shapes the global batch
        return keys.train_key(self.config, digests, self.parent.info.fingerprint, world=process_world(),
                              student=self.parent.student_fingerprint())

    def digest(self, phase_dir: Path) -> str:
        return self.cache.record_at(phase_dir)["digest"]

    def trained_targets(self) -> list[TargetConfig]:
        names = list(dataset_weights(self.config.bake, [t.name for t in self.config.targets]))
        return [self.config.target(name) for name in names]

    # -- phases -------------------------------------------------------------------------

    def _cached(self, key: PhaseKey) -> Path | None:
        """A finished phase; ranks > 0 never compute stim/rollout: they wait for rank 0's."""
        done = self.cache.get(key)
        if done is not None or not process_rank():
            return done
        deadline = time.monotonic() + RANK_ZERO_TIMEOUT
        while (done := self.cache.get(key)) is None:
            if time.monotonic() > deadline:
                raise BakeError(f"rank {process_rank()}: gave up waiting for rank 0's {key.phase} phase")
            time.sleep(0.5)
        return done

    def run_stim(self, target: TargetConfig) -> tuple[Path, PhaseOutcome]:
        from bgit.pipeline.stim import generate_stims

        key = self.stim_key(target)
        if done := self._cached(key):
            return done, PhaseOutcome("stim", target.name, key.key, cached=True)
        started = time.monotonic()
        rows = generate_stims(target, self.config.prompt_for(target), seed=self.config.bake.seed,
                              model_loader=self.parent.model_loader, base_dir=self.config_dir,
                              root=self.repo.root, progress=self.reporter.task(f"stim {target.name}", unit="stim"))
        rows = augment_stims(rows, target.augment.min_stims, seed=self.config.bake.seed)  # TARGET.augment
        if not rows:
            raise BakeError(f"target '{target.name}': the generators produced no stims")
        tmp = self.cache.begin(key)
        write_jsonl(tmp / "stim.jsonl", rows)
        seconds = time.monotonic() - started
        path = self.cache.finish(key, tmp, hash_file(tmp / "stim.jsonl"), count=len(rows), seconds=seconds)
        return path, PhaseOutcome("stim", target.name, key.key, False, seconds)

    def run_rollout(self, target: TargetConfig, stim_dir: Path) -> tuple[Path, PhaseOutcome]:
        key = self.rollout_key(target, stim_dir)
        if done := self._cached(key):
            return done, PhaseOutcome("rollout", target.name, key.key, cached=True,
                                      tokens=self.cache.record_at(done).get("tokens", 0))
        started = time.monotonic()
        self.parent.check_vocabularies([target])
        backend = self.rollout_backend()
        if backend.name == "vllm" and target.max_concurrency is not None:
            self.reporter.message(f"notice: TARGET.max_concurrency ({target.name}) has no effect on the vLLM "
                                  "backend: it schedules its own batches")
        stims = rollout_stims(target, read_jsonl(stim_dir / "stim.jsonl"))
        total = sum(stim.get("max_tokens", target.max_tokens) for stim in stims) * target.num_traj_per_stimulus
        task = self.reporter.task(f"rollout {target.name}", total=total, unit="tok")
        try:
            rows = backend.rollout(stims, self.config.prompt_for(target), target, seed=self.config.bake.seed,
                                   progress=task, sampler=self.parent.sampler_source(target))
        finally:
            task.close()
        tokens = sum(len(row["response_ids"]) for row in rows)
        tmp = self.cache.begin(key)
        write_jsonl(tmp / "rollout.jsonl", rows)
        seconds = time.monotonic() - started
        path = self.cache.finish(key, tmp, hash_file(tmp / "rollout.jsonl"), count=len(rows), tokens=tokens,
                                 seconds=seconds)
        return path, PhaseOutcome("rollout", target.name, key.key, False, seconds, tokens)

    def run_train(self, rollout_dirs: dict[str, Path], key: PhaseKey | None = None) -> tuple[Path, PhaseOutcome]:
        from bgit.train import train_adapter

        key = key or self.train_key(rollout_dirs)
        if done := self.cache.get(key):
            return done, PhaseOutcome("train", None, key.key, cached=True,
                                      tokens=self.cache.record_at(done).get("tokens", 0))
        started = time.monotonic()
        bind_device()  # ranks > 0 load the model here: on their own GPU
        if self.parent.student is not None:  # distill baking: the student alone is trained
            self.parent.release()
            model, tokenizer = self.parent.load_student()
        else:
            model, tokenizer = self.parent.load()
        data = training_data(self.config, rollout_dirs, tokenizer)
        work = self.cache.work_dir(key)
        task = self.reporter.task("train", unit="step")
        try:
            result = train_adapter(model, tokenizer, data.train, data.held_out, self.config.bake, work, progress=task)
        finally:
            task.close()
        seconds = time.monotonic() - started
        if process_rank():  # rank 0 alone seals the phase
            return work, PhaseOutcome("train", None, key.key, False, seconds, result.tokens)
        tmp = self.cache.begin(key)
        shutil.copytree(result.adapter_dir, tmp / "adapter")
        shutil.copy(work / "metrics.jsonl", tmp / "metrics.jsonl")
        path = self.cache.finish(key, tmp, hash_tree(tmp / "adapter"), tokens=result.tokens,
                                 final_train_kl=result.final_train_kl, final_eval_kl=result.final_eval_kl,
                                 train_trajectories=len(data.train), eval_trajectories=len(data.held_out),
                                 eval_stims=data.eval_stims, resumed_from_epoch=_checkpoint_epoch(result.resumed_from),
                                 seconds=seconds)
        return path, PhaseOutcome("train", None, key.key, False, seconds, result.tokens)

    def phase_seconds(self, outcome: PhaseOutcome) -> float:
        """Wall time of the run that produced the phase (this one, or the one cached)."""
        if not outcome.cached:
            return outcome.seconds
        return self.cache.record_at(self.cache.root / outcome.phase / outcome.key).get("seconds", 0.0)

    # -- dry run ------------------------------------------------------------------------

    def plan(self) -> list[PlanEntry]:
        """What a bake would run (``--dry-run``), without running anything."""
        entries, rollout_dirs = [], {}
        targets = self.trained_targets()
        for target in targets:
            stim_key = self.stim_key(target)
            stim_dir = self.cache.get(stim_key)
            entries.append(PlanEntry("stim", target.name, stim_key.key, stim_dir is not None))
            if stim_dir is None:
                entries.append(PlanEntry("rollout", target.name, None, False))
                continue
            rollout_key = self.rollout_key(target, stim_dir)
            rollout_dir = self.cache.get(rollout_key)
            entries.append(PlanEntry("rollout", target.name, rollout_key.key, rollout_dir is not None))
            if rollout_dir is not None:
                rollout_dirs[target.name] = rollout_dir
        if len(rollout_dirs) == len(targets):
            key = self.train_key(rollout_dirs)
            entries.append(PlanEntry("train", None, key.key, self.cache.get(key) is not None))
        else:
            entries.append(PlanEntry("train", None, None, False))
        return entries
