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
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bgit.evaluate.errors import NotABakeError

ADAPTER_CONFIG = "adapter/adapter_config.json"
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"


@dataclass
class Bake:
    repo: object
    ref: str
    commit: object  # pygit2.Commit
    record: dict = field(default_factory=dict)

    @property
    def sha(self) -> str:
        return str(self.commit.id)

    @property
    def short(self) -> str:
        return self.sha[:8]

    @property
    def base_model_name(self) -> str | None:
        return (self.record.get("base_model") or {}).get("name")

    @property
    def base_fingerprint(self) -> str | None:
        return (self.record.get("base_model") or {}).get("fingerprint")

    def read(self, path: str) -> bytes | None:
        return self.repo.read_file(self.sha, path)

    def read_text(self, path: str) -> str | None:
        data = self.read(path)
        return None if data is None else data.decode("utf-8")

    def read_jsonl(self, path: str) -> list[dict]:
        text = self.read_text(path)
        if text is None:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def manifest(self, path: str):
        return self.repo.read_manifest(self.sha, path)

    def paths(self) -> list[str]:
        return sorted(self.repo.tree_entries(self.commit))

    def targets(self) -> list[str]:
        names = {p.split("/")[1] for p in self.paths() if p.startswith("targets/") and p.count("/") >= 2}
        return sorted(names)

    def config(self):
        """The bake's input.yml as an InputConfig (None when the commit has none)."""
        from bgit.config import parse_config

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
        import blake3

        digest = blake3.blake3(config + (manifest.blake3.encode() if manifest else self.sha.encode())).hexdigest()
        target = self.repo.bgit_dir / "tmp" / "adapters" / digest[:24]
        if (target / "adapter_model.safetensors").exists():
            return target
        weights = self.read(ADAPTER_WEIGHTS)
        if weights is None:
            raise NotABakeError(self.ref, ADAPTER_WEIGHTS)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "adapter_config.json").write_bytes(config)
        (tmp / "adapter_model.safetensors").write_bytes(weights)
        try:
            os.replace(tmp, target)
        except OSError:  # another process materialised it first
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def open_bake(repo, ref: str = "HEAD", require_adapter: bool = True) -> Bake:
    """The bake at ``ref``; NotABakeError when it lacks bake.yml (or, if required, an adapter)."""
    commit = repo.resolve(ref)
    data = repo.read_file(str(commit.id), "bake.yml")
    if data is None:
        raise NotABakeError(ref, "bake.yml")
    record = yaml.safe_load(data) or {}
    bake = Bake(repo, ref, commit, record if isinstance(record, dict) else {})
    if require_adapter and repo.read_manifest(bake.sha, ADAPTER_WEIGHTS) is None and bake.read(ADAPTER_WEIGHTS) is None:
        raise NotABakeError(ref, ADAPTER_WEIGHTS)
    return bake


def open_commit(repo, ref: str) -> Bake:
    """Any commit seen through the Bake lens (bake.yml may be missing: record = {})."""
    commit = repo.resolve(ref)
    data = repo.read_file(str(commit.id), "bake.yml")
    record = (yaml.safe_load(data) or {}) if data else {}
    return Bake(repo, ref, commit, record if isinstance(record, dict) else {})


class StagedBake(Bake):
    """A bake that is not committed yet (for eval before the post-bake hook and the commit):
    ``files`` maps tree paths (as in a bake commit) to files on disk; ``record`` is bake.yml."""

    def __init__(self, files, record: dict, label: str = "staged bake") -> None:
        super().__init__(repo=None, ref=label, commit=None, record=dict(record))
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
        import tempfile

        target = Path(tempfile.mkdtemp(prefix="bgit-staged-adapter-"))
        shutil.copyfile(config, target / "adapter_config.json")
        shutil.copyfile(weights, target / "adapter_model.safetensors")
        return target
