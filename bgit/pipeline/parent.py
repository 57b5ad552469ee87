"""The parent model a bake starts from (DESIGN §1): the base model, or for sequential baking
(``BAKE.parent: head``) the base model with HEAD's adapter merged in.

The parent is both the teacher (with the teacher prompt) and the starting point of the
student; it is resolved and fingerprinted without loading weights (phase keys need only the
fingerprint), and loaded once, lazily, when a phase needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bgit.config import section_hash
from bgit.config.schema import InputConfig
from bgit.errors import BgitError
from bgit.models import ResolvedModel, load_model, resolve_model
from bgit.pipeline.rollout import TeacherSource, load_teacher
from bgit.record import ADAPTER_CONFIG, ADAPTER_WEIGHTS
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
        if manifest is None:
            where = f"{self.at[:8]}" if self.at else "HEAD"
            self.reporter.message(f"BAKE.parent is 'head' but {where} has no adapter: baking on the base model")
            return ParentInfo(base, "head")
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

    def model_loader(self, name: str | None):
        """For model-written stims: the base model is shared with rollout when it is the parent."""
        if name in (None, self.config.model.base) and not self.info.commit:
            return self.load()
        return load_model(self.resolve(name), dtype=self.config.model.dtype,
                          trust_remote_code=self.config.model.trust_remote_code)
