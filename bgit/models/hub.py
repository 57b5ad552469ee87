"""Hugging Face hub ids (``org/name``, ``org/name@revision``) resolved through huggingface_hub.

The cache is huggingface_hub's own (``models--ORG--NAME/{refs/main, snapshots/<commit>/,
blobs/}``), found the way huggingface_hub finds it — ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``,
else ``~/.cache/huggingface/hub`` — but read from the environment at each resolution, not
once when huggingface_hub is imported. ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``)
means the cache is all there is; otherwise ``snapshot_download`` asks the hub which commit
the revision names and downloads what the cache lacks, once.

Only what loading needs is downloaded: config, generation config, tokenizer and chat
template files, and the safetensors weights transformers loads (``model.safetensors``, or
the shards ``model.safetensors.index.json`` names). Never pickle weights (``*.bin``) and
never model code; a repository whose weights are pickle only is refused (DESIGN §5).

Fingerprint: BLAKE3 over ``(file, blob id)`` of config.json and the weight files, where the
blob id is the name of the cache blob the snapshot file links to — the file's sha256 for
LFS files (the weights), its git blob id for small ones (config.json): the hub addresses
blobs by content, so this is exact and costs one readlink per file. A snapshot file that is
a copy, not such a link (``HF_HUB_DISABLE_SYMLINKS``, Windows), is hashed instead. The commit
is not part of the fingerprint: a commit that changes neither config nor weights (a README
edit) keeps it, and with it the phase cache; the commit is recorded as ``revision``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import blake3

from bgit.models.errors import HubModelError, IncompleteModelError, ModelNotCachedError, PickleWeightsError

HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.][A-Za-z0-9_.-]*)(?:@(?P<revision>[^\s@]+))?")
CONFIG = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Everything loading needs besides the weights.
LOAD_PATTERNS = (CONFIG, "generation_config.json", SAFE_INDEX, "tokenizer.json", "tokenizer_config.json",
                 "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
                 "merges.txt", "spiece.model", "chat_template.jinja", "chat_template.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
_SHARD = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*\.safetensors")
_BLOB_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubId:
    repo: str                      # org/name
    revision: str | None = None    # a branch, tag or commit; None = main

    def __str__(self) -> str:
        return f"{self.repo}@{self.revision}" if self.revision else self.repo


@dataclass(frozen=True)
class HubSnapshot:
    hub_id: HubId
    path: Path                     # <cache>/models--ORG--NAME/snapshots/<commit>
    commit: str
    weights: tuple[str, ...]       # the weight files loading reads, relative to path


def parse_hub_id(name: str) -> HubId | None:
    """``org/name[@revision]`` -> HubId; None for anything else (hub names never hold '..' or '--')."""
    match = HUB_ID.fullmatch(name)
    if not match or ".." in match["repo"] or "--" in match["repo"]:
        return None
    return HubId(match["repo"], match["revision"])


def hub_cache_dir() -> Path:
    """huggingface_hub's cache directory as the environment names it now."""
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "huggingface")
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache))).resolve()


def offline_reason() -> str | None:
    """``HF_HUB_OFFLINE=1`` (the variable that set it) when the hub must not be asked, else None."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(variable)
        if value:  # huggingface_hub reads the first one set, even when it says "0"
            return f"{variable}={value}" if value.upper() in _TRUE else None
    return None


def repo_dir(cache: Path, repo: str) -> Path:
    return cache / f"models--{repo.replace('/', '--')}"


def fetch_snapshot(hub_id: HubId) -> HubSnapshot:
    """The snapshot of ``hub_id`` with everything loading needs, downloaded if missing and allowed."""
    from huggingface_hub import errors as hf_errors

    cache, offline = hub_cache_dir(), offline_reason()
    try:
        folder = _download(hub_id.repo, hub_id.revision, cache, offline, LOAD_PATTERNS)
        weights = weight_files(folder, hub_id)
        if missing_files(folder, weights) and not offline:
            weights = _download_weights(hub_id, folder, cache)
    except (hf_errors.HfHubHTTPError, hf_errors.LocalEntryNotFoundError, hf_errors.HFValidationError, OSError) as error:
        raise _translate(error, hub_id, cache, offline) from error
    missing = missing_files(folder, (CONFIG, *weights))
    if missing:
        pickle = pickle_files(folder)
        if pickle and SAFE_WEIGHTS in missing:
            raise PickleWeightsError(hub_id, pickle)
        described = missing[0] + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        raise IncompleteModelError(hub_id, cache, described, offline or "the download did not complete")
    return HubSnapshot(hub_id, folder, folder.name, tuple(weights))


def _download(repo: str, revision: str | None, cache: Path, offline: str | None, patterns,
              quiet: bool = True) -> Path:
    """snapshot_download of ``patterns``; progress bars only for the weights (small files are quick)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, revision=revision, cache_dir=cache, local_files_only=bool(offline),
                                  allow_patterns=list(patterns), tqdm_class=_quiet_tqdm() if quiet else None))


def _quiet_tqdm():
    from huggingface_hub.utils import tqdm

    class Quiet(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Quiet


def _download_weights(hub_id: HubId, folder: Path, cache: Path) -> list[str]:
    """Download the weight files of the snapshot's commit; refuse a pickle-only repository."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(hub_id.repo, revision=folder.name)
    if SAFE_INDEX not in files and SAFE_WEIGHTS not in files:
        pickle = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
        if pickle:
            raise PickleWeightsError(hub_id, pickle)
        raise HubModelError(f"model {hub_id} has no {SAFE_WEIGHTS} (nor {SAFE_INDEX}) at commit {folder.name}")
    weights = weight_files(folder, hub_id)
    _download(hub_id.repo, folder.name, cache, None, weights, quiet=False)
    return weights


def weight_files(folder: Path, name) -> list[str]:
    """The safetensors files transformers loads from ``folder``: the index's shards, or model.safetensors."""
    index = folder / SAFE_INDEX
    if not index.is_file():
        return [SAFE_WEIGHTS]
    try:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        why = type(error).__name__
        raise HubModelError(f"model {name}: {SAFE_INDEX} has no readable weight_map ({why})") from error
    for shard in shards:  # the index is data from the hub: it names files, never paths out or patterns
        if not isinstance(shard, str) or not _SHARD.fullmatch(shard) or ".." in shard.split("/"):
            raise HubModelError(f"model {name}: {SAFE_INDEX} names an invalid weight file {shard!r}")
    return shards


def missing_files(folder: Path, names) -> list[str]:
    return [name for name in names if not (folder / name).is_file()]


def pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(PICKLE_SUFFIXES)) if folder.is_dir() else []


def cached_commits(cache: Path, repo: str) -> list[str]:
    snapshots = repo_dir(cache, repo) / "snapshots"
    return sorted(p.name for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []


def _translate(error: Exception, hub_id: HubId, cache: Path, offline: str | None) -> HubModelError:
    from huggingface_hub import errors as hf_errors

    name = str(hub_id)
    if isinstance(error, hf_errors.RevisionNotFoundError):
        return HubModelError(f"model {name}: no revision {hub_id.revision!r} on the Hugging Face hub")
    if isinstance(error, hf_errors.GatedRepoError):
        return HubModelError(f"model {name} is gated on the Hugging Face hub: accept its terms on huggingface.co, "
                             "then log in (hf auth login) or set HF_TOKEN")
    if isinstance(error, hf_errors.RepositoryNotFoundError):
        return HubModelError(f"model {name} is not on the Hugging Face hub (if it is private: hf auth login "
                             "or set HF_TOKEN)")
    if isinstance(error, hf_errors.LocalEntryNotFoundError):
        reason = offline or _first_line(error.__cause__ or error)
        incomplete = getattr(hf_errors, "IncompleteSnapshotError", ())
        if incomplete and isinstance(error, incomplete):
            return IncompleteModelError(name, cache, "files the hub lists", reason)
        cached = [f"{hub_id.repo}@{commit}" for commit in cached_commits(cache, hub_id.repo)[:3]]
        return ModelNotCachedError(name, cache, reason, cached)
    if isinstance(error, hf_errors.HfHubHTTPError):
        return HubModelError(f"model {name}: the Hugging Face hub answered {_first_line(error)}")
    if isinstance(error, OSError):
        return HubModelError(f"model {name}: cannot use the Hugging Face cache at {cache}: {_first_line(error)}")
    return HubModelError(f"model {name}: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def blob_id(path: Path) -> str | None:
    """The hub blob a snapshot file links to (``../../blobs/<sha256 or git sha1>``), else None."""
    if not path.is_symlink():
        return None
    target = Path(os.readlink(path))
    if target.parent.name != "blobs" or not _BLOB_ID.fullmatch(target.name):
        return None
    return target.name


def hub_fingerprint(snapshot: HubSnapshot, hash_file: Callable[[Path], str]) -> str:
    """BLAKE3 over (file, blob id) of config + weights; ``hash_file`` for files that are not blob links."""
    entries = []
    for name in (CONFIG, *snapshot.weights):
        path = snapshot.path / name
        blob = blob_id(path)
        entries.append([name, "blob", blob] if blob else [name, "blake3", hash_file(path.resolve())])
    return blake3.blake3(json.dumps(["hub", entries], separators=(",", ":")).encode()).hexdigest()
