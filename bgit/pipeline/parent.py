"""The parent model a bake starts from (DESIGN §1): the base model, or for sequential baking
(``BAKE.parent: head``) the base model with HEAD's adapter merged in.

The parent is both the teacher (with the teacher prompt) and the starting point of the
student; it is resolved and fingerprinted without loading weights (phase keys need only the
fingerprint), and loaded once, lazily, when a phase needs it.

Two other models may take part, each named as MODEL.base is and needing the parent's
vocabulary (token ids pass between them unchanged):

- ``TARGET.model_name`` samples that target's trajectories (:meth:`ParentModel.sampler_source`);
  the teacher's log-probs on them still come from the parent with the teacher prompt;
- ``BAKE.model.student_model_path`` (distill baking) is the model the adapter is trained on
  instead of the parent (:meth:`ParentModel.load_student`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bgit.config import section_hash
from bgit.config.schema import InputConfig
from bgit.errors import BgitError
from bgit.models import ResolvedModel, load_model, load_tokenizer, resolve_model, vocabulary_difference
from bgit.pipeline.rollout import TeacherSource, load_teacher
from bgit.record import ADAPTER_CONFIG, ADAPTER_WEIGHTS, BAKE_RECORD, BakeRecord
from bgit.util.files import write_atomic
from bgit.util.progress import SILENT, Reporter


class ParentModelError(BgitError):
    pass


@dataclass(frozen=True)
class ParentInfo:
    base: ResolvedModel
    mode: str                          # base | head
    commit: str | None = None          # HEAD's bake, when baking on top of it
    adapter_digest: str | None = None  # BLAKE3 of HEAD's adapter weights

    @property
    def fingerprint(self) -> str:
        """What every phase key that depends on the parent model includes."""
        info = {"base": self.base.name, "base_fingerprint": self.base.fingerprint, "mode": self.mode}
        if self.commit:
            info.update(commit=self.commit, adapter_digest=self.adapter_digest)
        return section_hash(info)


class ParentModel:
    """``at``: the commit whose bake ``BAKE.parent: head`` builds on (default HEAD; a merge
    bake builds on the merge base, which both sides' bakes were trained on top of)."""

    def __init__(self, repo, config: InputConfig, reporter: Reporter = SILENT, at: str | None = None):
        self.repo, self.config, self.reporter, self.at = repo, config, reporter, at
        self._resolved: dict[str, ResolvedModel] = {}
        self._info: ParentInfo | None = None
        self._loaded = None

    def resolve(self, name: str) -> ResolvedModel:
        if name not in self._resolved:
            self._resolved[name] = resolve_model(name)
        return self._resolved[name]

    @property
    def info(self) -> ParentInfo:
        if self._info is None:
            base = self.resolve(self.config.model.base)
            self._info = ParentInfo(base, self.config.bake.parent)
            if self.config.bake.parent == "head":
                self._info = self._head_info(base)
        return self._info

    def _head_info(self, base: ResolvedModel) -> ParentInfo:
        head = self.repo.resolve(self.at) if self.at else self.repo.head_commit()
        manifest = self.repo.read_manifest(str(head.id), ADAPTER_WEIGHTS) if head else None
        where = f"{self.at[:8]}" if self.at else "HEAD"
        if manifest is None:
            self.reporter.message(f"BAKE.parent is 'head' but {where} has no adapter: baking on the base model")
            return ParentInfo(base, "head")
        record = self.repo.read_file(str(head.id), BAKE_RECORD)
        student = BakeRecord.from_yaml(record, f"{where}:{BAKE_RECORD}").student_model if record else None
        if student is not None and student.name:
            raise ParentModelError(f"BAKE.parent is 'head' but {where}'s bake was distilled into {student.name}: "
                                   "its adapter does not apply to MODEL.base")
        return ParentInfo(base, "head", str(head.id), manifest.blake3)

    def teacher_source(self) -> TeacherSource:
        """The parent model as rollout backends load it: the base model's directory and, when
        baking on top of a bake, that bake's adapter directory (never a loaded model)."""
        return TeacherSource(self.info.base, self.adapter_dir(), self.config.model.dtype,
                             self.config.model.trust_remote_code)

    def load(self):
        """(model, tokenizer) of the parent model (the adapter merged in), loaded once."""
        if self._loaded is None:
            self.reporter.message(f"loading {self.info.base.name}")
            self._loaded = load_teacher(self.teacher_source())
        return self._loaded

    def adapter_dir(self) -> Path | None:
        """HEAD's adapter as a directory PEFT (and vLLM) can load; None when baking on the base."""
        info = self.info
        if not info.commit:
            return None
        target = self.repo.bgit_dir / "cache" / "adapters" / f"head-{info.adapter_digest[:16]}"
        if not (target / "adapter_model.safetensors").exists():
            target.mkdir(parents=True, exist_ok=True)
            for path in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):  # weights last: their presence marks completion
                data = self.repo.read_file(info.commit, path)
                if data is None:
                    raise ParentModelError(f"HEAD's adapter is incomplete: {path} is missing")
                write_atomic(target / Path(path).name, data)
        return target

    def release(self) -> None:
        """Drop the loaded parent (a distilled student trains without it in memory)."""
        self._loaded = None

    # -- the sampling model (TARGET.model_name) and the student (distill baking) ----------

    def sampler_source(self, target) -> TeacherSource | None:
        """The model that samples ``target``'s trajectories when it is not the parent itself."""
        if not target.model_name:
            return None
        model = self.resolve(target.model_name)
        if model.fingerprint == self.info.base.fingerprint and not self.info.commit:
            return None
        return TeacherSource(model, None, self.config.model.dtype, self.config.model.trust_remote_code)

    def sampler_fingerprint(self, target) -> str | None:
        source = self.sampler_source(target)
        return None if source is None else section_hash({"name": source.model.name,
                                                         "fingerprint": source.model.fingerprint})

    @property
    def student(self) -> ResolvedModel | None:
        """The distill-baking student (BAKE.model.student_model_path), None: the parent is trained."""
        name = self.config.bake.model.student_model_path
        return self.resolve(name) if name else None

    def student_fingerprint(self) -> str | None:
        student = self.student
        return None if student is None else section_hash({"name": student.name, "fingerprint": student.fingerprint})

    def load_student(self):
        """(model, tokenizer) of the distill-baking student, loaded fresh (the trainer adds its LoRA)."""
        self.reporter.message(f"loading the student {self.student.name}")
        return load_model(self.student, dtype=self.config.model.dtype,
                          trust_remote_code=self.config.model.trust_remote_code)

    def check_vocabularies(self, targets=()) -> None:
        """Token ids pass unchanged between the parent and the student or a sampling model:
        their tokenizers must map every token alike (one line naming the model otherwise)."""
        others = [(t.model_name, "TARGET.model_name", self.sampler_source(t)) for t in targets]
        if self.student is not None:
            others.append((self.student.name, "BAKE.model.student_model_path", self.student))
        parent_tokenizer = None
        for name, key, source in others:
            if source is None:
                continue
            model = source.model if isinstance(source, TeacherSource) else source
            parent_tokenizer = parent_tokenizer or load_tokenizer(self.info.base, self.config.model.trust_remote_code)
            difference = vocabulary_difference(parent_tokenizer, load_tokenizer(model, self.config.model.trust_remote_code))
            if difference:
                raise ParentModelError(f"{key}: {name} does not share the vocabulary of the parent model "
                                       f"{self.info.base.name} ({difference})")

    def model_loader(self, name: str | None):
        """For model-written stims: the base model is shared with rollout when it is the parent."""
        if name in (None, self.config.model.base) and not self.info.commit:
            return self.load()
        return load_model(self.resolve(name), dtype=self.config.model.dtype,
                          trust_remote_code=self.config.model.trust_remote_code)
