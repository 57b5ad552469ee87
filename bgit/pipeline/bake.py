"""``bgit bake``: stim -> rollout -> train -> commit, each phase through the phase cache.

The :class:`Baker` owns one bake of one input.yml in one repository. It loads the model
lazily and once; every phase is keyed by exactly its inputs (DESIGN §3.3), so a rerun with
unchanged inputs computes nothing, changing only the learning rate re-runs only training,
and an interrupted bake resumes from the last finished phase and training checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bgit import __version__
from bgit.config import config_to_dict, section_hash
from bgit.config.schema import InputConfig, PromptConfig, TargetConfig
from bgit.errors import BgitError
from bgit.pipeline.dataset import TargetRows, compose_mix, dataset_weights, split_by_stim, to_examples
from bgit.pipeline.phases import PhaseCache, PhaseKey, file_digest, tree_digest
from bgit.pipeline.progress import SILENT, Reporter
from bgit.store.writers import link_or_copy

BAKE_RECORD_VERSION = 1


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
class BakeResult:
    commit: str | None
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    final_train_kl: float | None = None
    final_eval_kl: float | None = None
    record: dict = field(default_factory=dict)


@dataclass
class PlanEntry:
    phase: str
    target: str | None
    key: str | None     # None: not computable yet (an upstream phase must run first)
    cached: bool


def process_rank() -> int:
    """This process's rank under a distributed launcher (deepspeed/torchrun); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def _checkpoint_epoch(path: str | None) -> int:
    """0, or the epoch of the checkpoint ('.../epoch-0003') a training run resumed from."""
    return int(Path(path).name.split("-")[-1]) if path else 0


def _prompt_inputs(prompt: PromptConfig, *, teacher: bool, student: bool) -> dict:
    inputs = {}
    if teacher:
        inputs["teacher"] = {"messages": prompt.teacher_messages, "tools": prompt.teacher_tools}
    if student:
        inputs["student"] = prompt.student_messages
    return inputs


class Baker:
    def __init__(self, repo, config: InputConfig, *, backend: str | None = None,
                 reporter: Reporter = SILENT, config_dir: Path | None = None):
        self.repo = repo
        self.config = config
        self.backend = backend
        self.reporter = reporter
        self.config_dir = Path(config_dir) if config_dir else repo.root
        self.cache = PhaseCache(repo.bgit_dir / "phases")
        self._resolved = {}
        self._parent = None      # (model, tokenizer) of the parent model, loaded once
        self._parent_info = None
        self._rollout_backend = None  # built by rollout_backend(), closed before training

    # -- models -------------------------------------------------------------------------

    def resolve(self, name: str):
        if name not in self._resolved:
            from bgit.models import resolve_model
            self._resolved[name] = resolve_model(name)
        return self._resolved[name]

    def parent_info(self) -> dict:
        """Base model and, for sequential baking, HEAD's adapter the new bake builds on."""
        if self._parent_info is None:
            base = self.resolve(self.config.model.base)
            info = {"base": base.name, "base_fingerprint": base.fingerprint, "mode": self.config.bake.parent}
            if self.config.bake.parent == "head":
                head = self.repo.head_commit()
                manifest = self.repo.read_manifest("HEAD", "adapter/adapter_model.safetensors") if head else None
                if manifest is None:
                    self.reporter.message("BAKE.parent is 'head' but HEAD has no adapter: baking on the base model")
                else:
                    info["commit"] = str(head.id)
                    info["adapter_digest"] = manifest.blake3
            self._parent_info = info
        return self._parent_info

    def parent_fingerprint(self) -> str:
        return section_hash(self.parent_info())

    def parent_model(self):
        """(model, tokenizer) of the parent model: base + HEAD's adapter merged, loaded once."""
        if self._parent is None:
            from bgit.pipeline.rollout import load_teacher
            self.reporter.message(f"loading {self.resolve(self.config.model.base).name}")
            self._parent = load_teacher(self.teacher_source())
        return self._parent

    def _head_adapter_dir(self) -> Path:
        from bgit.util.files import write_atomic
        target = self.repo.bgit_dir / "tmp" / f"head-adapter-{self.parent_info()['adapter_digest'][:16]}"
        if not (target / "adapter_model.safetensors").exists():
            target.mkdir(parents=True, exist_ok=True)
            for name in ("adapter_config.json", "adapter_model.safetensors"):  # the weights last
                data = self.repo.read_file(self.parent_info()["commit"], f"adapter/{name}")
                if data is None:
                    raise BakeError(f"HEAD's adapter is incomplete: adapter/{name} is missing")
                write_atomic(target / name, data)
        return target

    # -- the rollout backend: built from the teacher's source, never from a loaded model --

    def teacher_source(self):
        """The parent model as a rollout backend loads it: base dir + HEAD's adapter dir."""
        from bgit.pipeline.rollout import TeacherSource
        adapter = self._head_adapter_dir() if "commit" in self.parent_info() else None
        return TeacherSource(self.resolve(self.config.model.base), adapter, self.config.model.dtype)

    def rollout_backend(self):
        """One backend for every target; the HF one shares the parent model with training."""
        if self._rollout_backend is None:
            from bgit.pipeline.rollout import make_backend
            self._rollout_backend = make_backend(self.backend, self.teacher_source(), load_hf=self.parent_model)
        return self._rollout_backend

    def close_rollout_backend(self) -> None:
        """Free the backend's engine (vLLM's memory) before training."""
        if self._rollout_backend is not None:
            self._rollout_backend.close()
            self._rollout_backend = None

    def _model_loader(self, name: str):
        """For model-using stim generators: share the base model when they ask for it."""
        from bgit.models import load_model
        if name in (None, self.config.model.base) and self.config.bake.parent != "head":
            return self.parent_model()
        return load_model(self.resolve(name), dtype=self.config.model.dtype)

    # -- keys ---------------------------------------------------------------------------

    def stim_key(self, target: TargetConfig) -> PhaseKey:
        prompt = self.config.prompt_for(target)
        generators, models, reads_prompt = [], {}, False
        for generator in target.generators:
            entry = config_to_dict(generator)
            if generator.type == "from_dataset" and generator.path:
                path = self._resolve_data_path(generator.path)
                entry["data_digest"] = tree_digest(path) if path.is_dir() else file_digest(path)
            if generator.type in ("oneshot_qs", "persona"):  # model-written: they read ${prompt_u}
                name = generator.model or self.config.model.base
                models[name] = self.resolve(name).fingerprint
                reads_prompt = True
            generators.append(entry)
        return PhaseKey.of("stim", generators=generators, models=models, seed=self.config.bake.seed,
                           **_prompt_inputs(prompt, teacher=reads_prompt, student=False))

    def rollout_key(self, target: TargetConfig, stim_digest: str) -> PhaseKey:
        prompt = self.config.prompt_for(target)
        sampling = {"max_tokens": target.max_tokens, "temperature": target.temperature,
                    "num_traj_per_stimulus": target.num_traj_per_stimulus, "top_k": target.top_k}
        return PhaseKey.of("rollout", stim=stim_digest, parent=self.parent_fingerprint(),
                           sampling=sampling, seed=self.config.bake.seed,
                           **_prompt_inputs(prompt, teacher=True, student=False))

    def train_key(self, rollout_digests: dict[str, str]) -> PhaseKey:
        bake = config_to_dict(self.config.bake)
        bake.pop("name", None)
        students = {t.name: self.config.prompt_for(t).student_messages for t in self.config.targets}
        teachers = {}
        if self.config.bake.loss == "full":
            teachers = {t.name: _prompt_inputs(self.config.prompt_for(t), teacher=True, student=False)
                        for t in self.config.targets}
        return PhaseKey.of("train", rollouts=rollout_digests, students=students, teachers=teachers,
                           bake=bake, parent=self.parent_fingerprint())

    def _resolve_data_path(self, path: str) -> Path:
        resolved = Path(path) if Path(path).is_absolute() else self.config_dir / path
        if not resolved.exists():
            raise BakeError(f"{self.config.source}: from_dataset path not found: {path}")
        return resolved

    # -- phases -------------------------------------------------------------------------

    def trained_targets(self) -> list[TargetConfig]:
        names = list(dataset_weights(self.config.bake, [t.name for t in self.config.targets]))
        return [self.config.target(name) for name in names]

    def _wait_for_rank_zero(self, key: PhaseKey, timeout: float = 6 * 3600) -> Path:
        """Ranks > 0 of a multi-GPU bake never sample: they wait for rank 0 to seal the phase."""
        deadline = time.monotonic() + timeout
        while (done := self.cache.get(key)) is None:
            if time.monotonic() > deadline:
                raise BakeError(f"rank {process_rank()}: gave up waiting for rank 0's {key.phase} phase")
            time.sleep(2)
        return done

    def run_stim(self, target: TargetConfig) -> tuple[Path, PhaseOutcome]:
        from bgit.pipeline.records import write_jsonl
        from bgit.pipeline.stim import generate_stims

        key = self.stim_key(target)
        done = self.cache.get(key) or (self._wait_for_rank_zero(key) if process_rank() else None)
        if done:
            return done, PhaseOutcome("stim", target.name, key.key, cached=True)
        started = time.monotonic()
        rows = generate_stims(target, self.config.prompt_for(target), seed=self.config.bake.seed,
                              model_loader=self._model_loader, base_dir=self.config_dir,
                              progress=self.reporter.task(f"stim {target.name}", unit="stim"))
        if not rows:
            raise BakeError(f"target '{target.name}': the generators produced no stims")
        tmp = self.cache.begin(key)
        write_jsonl(tmp / "stim.jsonl", rows)
        seconds = time.monotonic() - started
        path = self.cache.finish(key, tmp, file_digest(tmp / "stim.jsonl"), count=len(rows), seconds=seconds)
        return path, PhaseOutcome("stim", target.name, key.key, False, seconds)

    def run_rollout(self, target: TargetConfig, stim_dir: Path) -> tuple[Path, PhaseOutcome]:
        from bgit.pipeline.records import read_jsonl, write_jsonl

        key = self.rollout_key(target, self.cache_digest(stim_dir))
        done = self.cache.get(key) or (self._wait_for_rank_zero(key) if process_rank() else None)
        if done:
            return done, PhaseOutcome("rollout", target.name, key.key, cached=True,
                                      tokens=self.cache.record_at(done).get("tokens", 0))
        started = time.monotonic()
        backend = self.rollout_backend()
        stims = read_jsonl(stim_dir / "stim.jsonl")
        total = len(stims) * target.num_traj_per_stimulus * target.max_tokens
        task = self.reporter.task(f"rollout {target.name}", total=total, unit="tok")
        try:
            rows = backend.rollout(stims, self.config.prompt_for(target), target,
                                   seed=self.config.bake.seed, progress=task)
        finally:
            task.close()
        tokens = sum(len(row["response_ids"]) for row in rows)
        tmp = self.cache.begin(key)
        write_jsonl(tmp / "rollout.jsonl", rows)
        seconds = time.monotonic() - started
        path = self.cache.finish(key, tmp, file_digest(tmp / "rollout.jsonl"), count=len(rows), tokens=tokens,
                                 seconds=seconds)
        return path, PhaseOutcome("rollout", target.name, key.key, False, seconds, tokens)

    def cache_digest(self, phase_dir: Path) -> str:
        return self.cache.record_at(phase_dir)["digest"]

    def run_train(self, rollout_dirs: dict[str, Path], key: PhaseKey | None = None) -> tuple[Path, PhaseOutcome]:
        key = key or self.train_key({name: self.cache_digest(path) for name, path in rollout_dirs.items()})
        done = self.cache.get(key)
        if done:
            record = self.cache.record_at(done)
            return done, PhaseOutcome("train", None, key.key, cached=True, tokens=record.get("tokens", 0))
        from bgit.pipeline.records import read_jsonl
        from bgit.pipeline.settings import train_settings
        from bgit.train import train_adapter

        started = time.monotonic()
        bake = self.config.bake
        targets, train_parts, eval_pairs, eval_stims = {}, {}, [], {}
        for name, path in rollout_dirs.items():
            target = self.config.target(name)
            prompt = self.config.prompt_for(target)
            rows = read_jsonl(path / "rollout.jsonl")
            targets[name] = TargetRows(name, rows, prompt.student_messages, prompt.teacher_messages,
                                       prompt.teacher_tools)
            train_rows, eval_rows = split_by_stim(rows, bake.data.train_eval_split, bake.seed)
            train_parts[name] = train_rows
            eval_pairs.extend((name, row) for row in eval_rows)
            eval_stims[name] = sorted({row["stim_id"] for row in eval_rows})
        mix = compose_mix(train_parts, dataset_weights(bake, list(rollout_dirs)), bake.total_trajectories, bake.seed)
        if not mix:
            raise BakeError("no training trajectories: add stims or raise BAKE.data.train_eval_split")
        model, tokenizer = self.parent_model()
        full = bake.loss == "full"
        train = to_examples(tokenizer, mix, targets, with_teacher_ids=full)
        held_out = to_examples(tokenizer, eval_pairs, targets, with_teacher_ids=full)
        settings = train_settings(bake, device=str(next(model.parameters()).device))
        work = self.cache.work_dir(key)
        task = self.reporter.task("train", unit="step")
        try:
            result = train_adapter(model, tokenizer, train, held_out, settings, work, progress=task)
        finally:
            task.close()
        if process_rank():
            return work, PhaseOutcome("train", None, key.key, False, time.monotonic() - started, result.tokens)
        tmp = self.cache.begin(key)
        shutil.copytree(result.adapter_dir, tmp / "adapter")
        shutil.copy(work / "metrics.jsonl", tmp / "metrics.jsonl")
        path = self.cache.finish(key, tmp, tree_digest(tmp / "adapter"), tokens=result.tokens,
                                 final_train_kl=result.final_train_kl, final_eval_kl=result.final_eval_kl,
                                 train_trajectories=len(train), eval_trajectories=len(held_out),
                                 eval_stims=eval_stims, resumed_from_epoch=_checkpoint_epoch(result.resumed_from),
                                 seconds=time.monotonic() - started)
        return path, PhaseOutcome("train", None, key.key, False, time.monotonic() - started, result.tokens)

    # -- the whole bake -----------------------------------------------------------------

    def plan(self) -> list[PlanEntry]:
        """What a bake would run (``--dry-run``), without running anything."""
        entries, rollout_digests = [], {}
        for target in self.trained_targets():
            stim_key = self.stim_key(target)
            stim_dir = self.cache.get(stim_key)
            entries.append(PlanEntry("stim", target.name, stim_key.key, stim_dir is not None))
            if stim_dir is None:
                entries.append(PlanEntry("rollout", target.name, None, False))
                continue
            rollout_key = self.rollout_key(target, self.cache_digest(stim_dir))
            rollout_dir = self.cache.get(rollout_key)
            entries.append(PlanEntry("rollout", target.name, rollout_key.key, rollout_dir is not None))
            if rollout_dir is not None:
                rollout_digests[target.name] = self.cache_digest(rollout_dir)
        if len(rollout_digests) == len(self.trained_targets()):
            key = self.train_key(rollout_digests)
            entries.append(PlanEntry("train", None, key.key, self.cache.get(key) is not None))
        else:
            entries.append(PlanEntry("train", None, None, False))
        return entries

    def bake(self, message: str | None = None, force: bool = False) -> BakeResult:
        from bgit.repo.hooks import run_hook

        run_hook(self.repo, "pre-bake", {"BGIT_CONFIG": Path(self.config.source).resolve()})
        self.cache.clean_temporaries()
        outcomes, stim_dirs, rollout_dirs = [], {}, {}
        for target in self.trained_targets():
            stim_dirs[target.name], outcome = self.run_stim(target)
            outcomes.append(outcome)
        for target in self.trained_targets():
            rollout_dirs[target.name], outcome = self.run_rollout(target, stim_dirs[target.name])
            outcomes.append(outcome)
        self.close_rollout_backend()
        train_key = self.train_key({n: self.cache_digest(p) for n, p in rollout_dirs.items()})
        self._refuse_rebake(train_key, force)
        train_dir, outcome = self.run_train(rollout_dirs, train_key)
        outcomes.append(outcome)
        if process_rank():  # rank 0 alone evaluates and commits
            return BakeResult(None, outcomes)
        train_record = self.cache.record_at(train_dir)
        record = self.bake_record(outcomes, train_record)
        commit = self.commit(stim_dirs, rollout_dirs, train_dir, record, message or self.config.bake.name)
        return BakeResult(commit, outcomes, train_record.get("final_train_kl"),
                          train_record.get("final_eval_kl"), record)

    def _refuse_rebake(self, train_key: PhaseKey, force: bool) -> None:
        if force or self.repo.head_commit() is None:
            return
        data = self.repo.read_file("HEAD", "bake.yml")
        if not data:
            return
        baked = (yaml.safe_load(data) or {}).get("phase_keys", {}).get("train")
        if baked == train_key.key:
            raise BakeError(f"this config is already baked at HEAD (train {train_key.short}); "
                            "use --force to commit it again")

    def bake_record(self, outcomes: list[PhaseOutcome], train_record: dict) -> dict:
        import peft
        import torch
        import transformers

        info = self.parent_info()
        keys: dict = {"stim": {}, "rollout": {}}
        for outcome in outcomes:
            if outcome.target:
                keys[outcome.phase][outcome.target] = outcome.key
            else:
                keys[outcome.phase] = outcome.key
        return {
            "bgit_bake": BAKE_RECORD_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "base_model": {"name": info["base"], "fingerprint": info["base_fingerprint"]},
            "parent": {"mode": info["mode"], "commit": info.get("commit"),
                       "adapter_digest": info.get("adapter_digest")},
            "targets": [t.name for t in self.trained_targets()],
            "hyperparameters": config_to_dict(self.config.bake),
            "seed": self.config.bake.seed,
            "phase_keys": keys,
            "timings": {o.label: round(self._phase_seconds(o), 2) for o in outcomes},
            "cached": [o.label for o in outcomes if o.cached],
            "tokens": {"rollout": sum(o.tokens for o in outcomes if o.phase == "rollout"),
                       "train": train_record.get("tokens", 0)},
            "trajectories": {"train": train_record.get("train_trajectories"),
                             "eval": train_record.get("eval_trajectories")},
            "eval_stims": train_record.get("eval_stims", {}),
            "train_resumed_from_epoch": train_record.get("resumed_from_epoch", 0),
            "metrics": {"final_train_kl": train_record.get("final_train_kl"),
                        "final_eval_kl": train_record.get("final_eval_kl")},
            "versions": {"bgit": __version__, "torch": str(torch.__version__),
                         "transformers": str(transformers.__version__), "peft": str(peft.__version__),
                         "python": platform.python_version()},
            "device": self._device_name(),
        }

    def _phase_seconds(self, outcome: PhaseOutcome) -> float:
        """Wall time of the run that produced the phase (this one, or the one cached)."""
        if not outcome.cached:
            return outcome.seconds
        return self.cache.record_at(self.cache.root / outcome.phase / outcome.key).get("seconds", 0.0)

    @staticmethod
    def _device_name() -> str:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
        return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"

    def _dataset_files(self) -> dict[str, Path]:
        """from_dataset files inside the work tree: inputs of the bake, committed with it."""
        found = {}
        for target in self.trained_targets():
            for generator in target.generators:
                if generator.type != "from_dataset" or not generator.path:
                    continue
                path = self._resolve_data_path(generator.path).resolve()
                if path.is_file() and path.is_relative_to(self.repo.root.resolve()):
                    found[path.relative_to(self.repo.root.resolve()).as_posix()] = path
        return found

    def commit(self, stim_dirs, rollout_dirs, train_dir: Path, record: dict, message: str) -> str:
        """Stage the bake tree, evaluate it, let post-bake veto it, then commit it."""
        from bgit.evaluate import StagedBake, evaluate_bake, write_eval
        from bgit.repo.hooks import run_hook

        files: dict[str, Path] = {}
        (self.repo.bgit_dir / "tmp").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.repo.bgit_dir / "tmp") as staging:
            staging = Path(staging)
            shutil.copy(Path(self.config.source), staging / "input.yml")
            files["input.yml"] = staging / "input.yml"
            files.update(self._dataset_files())
            for name, path in stim_dirs.items():
                files[f"targets/{name}/stim.jsonl"] = path / "stim.jsonl"
            for name, path in rollout_dirs.items():
                files[f"targets/{name}/rollout.jsonl"] = path / "rollout.jsonl"
            adapter_dir = staging / "adapter"  # post-bake hooks find the whole bake in staging
            if "commit" in self.parent_info():
                from bgit.train import concat_adapters
                concat_adapters([self._head_adapter_dir(), train_dir / "adapter"], adapter_dir)
            else:
                shutil.copytree(train_dir / "adapter", adapter_dir, copy_function=link_or_copy)
            for path in sorted(adapter_dir.iterdir()):
                if path.is_file():
                    files[f"adapter/{path.name}"] = path
            files["metrics.jsonl"] = train_dir / "metrics.jsonl"
            (staging / "bake.yml").write_text(yaml.safe_dump(record, sort_keys=False))
            files["bake.yml"] = staging / "bake.yml"

            results = None
            if any(record.get("eval_stims", {}).values()):
                results = evaluate_bake(StagedBake(files, record), reporter=self.reporter)
                record["metrics"]["eval_closure"] = results["closure"]
                (staging / "bake.yml").write_text(yaml.safe_dump(record, sort_keys=False))
                (staging / "eval.json").write_text(json.dumps(results, indent=1, sort_keys=True))
            run_hook(self.repo, "post-bake", {
                "BGIT_BAKE_DIR": staging,
                "BGIT_EVAL_CLOSURE": results["closure"] if results else None,
                "BGIT_FINAL_EVAL_KL": record["metrics"]["final_eval_kl"],
            })
            commit = self.repo.commit_files(files, message, replace_dirs=("targets", "adapter"))
            if results is not None:
                write_eval(self.repo, commit, {**results, "commit": commit})
            return commit
