"""Reading one bake commit: its record (bake.yml), config, datasets and adapter.

A bake commit's tree (DESIGN §3.2)::

    input.yml  bake.yml  metrics.jsonl
    targets/<name>/stim.jsonl  targets/<name>/rollout.jsonl
    adapter/adapter_config.json  adapter/adapter_model.safetensors

Adapters are materialised once per content digest under ``.git/bgit/tmp/adapters/``
so that PEFT can load them from a directory.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bgit.evaluate.errors import NoBaseModelError, NotABakeError
from bgit.record import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, BAKE_RECORD, BakeRecord, BakeRecordError, ModelRef,
                         RecordError, jsonl_lines)
from bgit.util.files import hash_bytes, replace_dir_atomic
from bgit.repo.sync import stage_zero
from bgit.config import load_config, parse_config


@dataclass
class Bake:
    repo: object
    ref: str
    commit: object  # pygit2.Commit
    record: BakeRecord = field(default_factory=BakeRecord)
    config_path: Path | None = None   # an input.yml to use instead of the commit's (eval --config)

    @property
    def sha(self) -> str:
        return str(self.commit.id)

    @property
    def short(self) -> str:
        return self.sha[:8]

    @property
    def base_model_name(self) -> str | None:
        """The model the adapter applies to (a distill bake's student)."""
        return self.record.adapter_base.name

    @property
    def base_fingerprint(self) -> str | None:
        return self.record.adapter_base.fingerprint

    @property
    def teacher_model(self) -> ModelRef | None:
        """A distill bake's teacher (bake.yml base_model), a model of its own; None when the
        teacher is the adapter's base model itself (with the adapter off, or the parent bake's)."""
        record = self.record
        return record.base_model if record.adapter_base is not record.base_model else None

    @property
    def message(self) -> str:
        return self.commit.message if self.commit is not None else ""

    def read(self, path: str) -> bytes | None:
        return self.repo.read_file(self.sha, path)

    def read_text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8")

    def read_jsonl(self, path: str) -> list[dict]:
        text = self.read_text(path)
        if text is None:
            return []
        rows = []
        for number, line in enumerate(jsonl_lines(text), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise RecordError(f"{self.short}:{path}:{number}: invalid JSON") from None
            if not isinstance(row, dict):
                raise RecordError(f"{self.short}:{path}:{number}: expected a JSON object")
            rows.append(row)
        return rows

    def manifest(self, path: str):
        return self.repo.read_manifest(self.sha, path)

    def paths(self) -> list[str]:
        return sorted(self.repo.tree_entries(self.commit))

    def targets(self) -> list[str]:
        names = {p.split("/")[1] for p in self.paths() if p.startswith("targets/") and p.count("/") >= 2}
        return sorted(names)

    def config(self):
        """The bake's input.yml as an InputConfig (None when the commit has none), or the
        file ``config_path`` names."""

        if self.config_path is not None:
            return load_config(self.config_path)
        text = self.read_text("input.yml")
        return None if text is None else parse_config(text, filename=f"{self.short}:input.yml")

    def has_adapter(self) -> bool:
        return self.manifest(ADAPTER_WEIGHTS) is not None or self.read(ADAPTER_WEIGHTS) is not None

    def adapter_config(self) -> dict:
        text = self.read_text(ADAPTER_CONFIG)
        if text is None:
            raise NotABakeError(self.ref, ADAPTER_CONFIG)
        return json.loads(text)

    def adapter_dir(self) -> Path:
        """A directory holding this bake's adapter (materialised once, read-only by convention)."""
        manifest = self.manifest(ADAPTER_WEIGHTS)
        config = self.read(ADAPTER_CONFIG)
        if config is None:
            raise NotABakeError(self.ref, ADAPTER_CONFIG)
        digest = hash_bytes(config + (manifest.blake3.encode() if manifest else self.sha.encode()))
        target = self.repo.bgit_dir / "cache" / "adapters" / digest[:24]
        if (target / "adapter_model.safetensors").exists():
            return target
        weights = self.read(ADAPTER_WEIGHTS)
        if weights is None:
            raise NotABakeError(self.ref, ADAPTER_WEIGHTS)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        (tmp / "adapter_config.json").write_bytes(config)
        (tmp / "adapter_model.safetensors").write_bytes(weights)
        replace_dir_atomic(tmp, target)  # False: another process materialised it first
        return target

    def parent_bake(self) -> "Bake | None":
        """For a sequential bake (BAKE.parent: head): the bake it was trained on top of."""
        if not self.record.parent.commit:
            return None
        return open_bake(self.repo, self.record.parent.commit)


def read_record(repo, commit) -> BakeRecord | None:
    """The commit's bake.yml as a BakeRecord; None when it has none. The one reader of
    bake.yml from a commit (bounded, see bgit.record.bake)."""
    data = repo.read_file(str(commit.id), BAKE_RECORD)
    if data is None:
        return None
    return BakeRecord.from_yaml(data, f"{str(commit.id)[:8]}:{BAKE_RECORD}")


def open_bake(repo, ref: str = "HEAD", require_adapter: bool = True, require_record: bool = True,
              base: str | None = None) -> Bake:
    """The bake at ``ref``; NotABakeError when it lacks bake.yml (or, if required, an adapter).

    ``require_record=False`` also opens an adapter trained elsewhere and committed by hand
    (adapter_config.json + adapter_model.safetensors, no bake.yml): its base model is ``base``,
    else adapter_config.json's ``base_model_name_or_path``. ``base`` also replaces the model
    bake.yml names as the adapter's base (a distill bake's student). export, generate, chat, eval, diff and serve open bakes this way."""
    commit = repo.resolve(ref)
    record = read_record(repo, commit)
    if record is None and require_record:
        raise NotABakeError(ref, BAKE_RECORD)
    bake = Bake(repo, ref, commit, record or BakeRecord(created=""))
    if require_adapter and not bake.has_adapter():
        raise NotABakeError(ref, ADAPTER_WEIGHTS)
    if base and base != bake.base_model_name:
        if bake.record.adapter_base is bake.record.student_model:
            bake.record.student_model = ModelRef(name=base)
        else:
            bake.record.base_model = ModelRef(name=base)
    elif not bake.record.base_model.name and not require_record and bake.has_adapter():
        named = bake.adapter_config().get("base_model_name_or_path")
        if not isinstance(named, str) or not named:
            raise NoBaseModelError(ref)
        bake.record.base_model = ModelRef(name=named)
    return bake


def work_tree_bake(repo) -> "StagedBake":
    """The tracked files of the work tree seen as a bake (``bgit diff`` against the work tree)."""

    index = repo.git.index
    index.read()
    files = {path: repo.root / path for path in stage_zero(index) if (repo.root / path).is_file()}
    record = BakeRecord(created="")
    if BAKE_RECORD in files:
        try:
            record = BakeRecord.from_yaml(files[BAKE_RECORD].read_bytes(), f"work tree:{BAKE_RECORD}")
        except BakeRecordError:
            pass  # a bake.yml that is not bgit's: compared as a plain file
    return StagedBake(files, record, label="work tree", repo=repo)


def empty_bake() -> "StagedBake":
    """Nothing: the side of a diff before the first commit."""
    return StagedBake({}, BakeRecord(created=""), label="(nothing)")


def open_commit(repo, ref: str) -> Bake:
    """Any commit seen through the Bake lens (without bake.yml the record has defaults)."""
    commit = repo.resolve(ref)
    try:
        record = read_record(repo, commit)
    except BakeRecordError:
        record = None  # a file named bake.yml that is not bgit's: compare it as a plain file
    return Bake(repo, ref, commit, record or BakeRecord())


class StagedBake(Bake):
    """A bake that is not committed yet (for eval before the post-bake hook and the commit):
    ``files`` maps tree paths (as in a bake commit) to files on disk; ``record`` is bake.yml."""

    def __init__(self, files, record: BakeRecord, label: str = "staged bake", repo=None) -> None:
        super().__init__(repo=repo, ref=label, commit=None, record=record)
        self.files = {path: Path(source) for path, source in files.items()}

    @property
    def sha(self) -> str | None:
        return None

    @property
    def short(self) -> str:
        return "staged"

    def read(self, path: str) -> bytes | None:
        source = self.files.get(path)
        return source.read_bytes() if source is not None and source.is_file() else None

    def manifest(self, path: str):
        return None

    def paths(self) -> list[str]:
        return sorted(self.files)

    def adapter_dir(self) -> Path:
        config, weights = self.files.get(ADAPTER_CONFIG), self.files.get(ADAPTER_WEIGHTS)
        if config is None or weights is None:
            raise NotABakeError(self.ref, ADAPTER_CONFIG if config is None else ADAPTER_WEIGHTS)
        if config.parent == weights.parent and config.name == "adapter_config.json" \
                and weights.name == "adapter_model.safetensors":
            return config.parent
        target = Path(tempfile.mkdtemp(prefix="bgit-staged-adapter-"))
        shutil.copyfile(config, target / "adapter_config.json")
        shutil.copyfile(weights, target / "adapter_model.safetensors")
        return target
