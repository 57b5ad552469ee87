"""The named datasets of ``from_dataset`` generators (``dataset: squad``), through the
``datasets`` library.

Each name stands for one hub dataset, configuration, split and the column(s) that hold the
user message:

    squad          rajpurkar/squad        plain_text  train  question
    gsm8k          openai/gsm8k           main        train  question
    mmlu           cais/mmlu              all         test   question, then its choices as "A. ..." lines
    hellaswag      Rowan/hellaswag        default     train  ctx
    code_contests  deepmind/code_contests default     train  description

A named dataset is read from the ``datasets`` cache (``$HF_DATASETS_CACHE``, else
``$HF_HOME/datasets``, else ``~/.cache/huggingface/datasets``), where ``load_dataset`` left it;
when the hub can be reached, a dataset not in the cache is downloaded once, as models are.
Offline (``HF_DATASETS_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``, read when the dataset is loaded)
a dataset not in the cache is one line naming it and the cache directory. A local copy (a
saved ``datasets`` directory or a data file) is read through the generator's ``path``
instead, with the same columns (:func:`message_of`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bgit.errors import BgitError

TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


class NamedDatasetError(BgitError):
    """A named dataset that cannot be loaded."""


@dataclass(frozen=True)
class NamedDataset:
    repo: str
    config: str
    split: str
    columns: tuple[str, ...]  # the first holds the message; mmlu adds its choices


NAMED = {
    "squad": NamedDataset("rajpurkar/squad", "plain_text", "train", ("question",)),
    "gsm8k": NamedDataset("openai/gsm8k", "main", "train", ("question",)),
    "mmlu": NamedDataset("cais/mmlu", "all", "test", ("question", "choices")),
    "hellaswag": NamedDataset("Rowan/hellaswag", "default", "train", ("ctx",)),
    "code_contests": NamedDataset("deepmind/code_contests", "default", "train", ("description",)),
}


def datasets_cache_dir() -> Path:
    """Where ``datasets`` keeps what it loaded, as the environment says now."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "datasets"


def offline_variable() -> str | None:
    """The variable that switches the hub off (``HF_DATASETS_OFFLINE=1``), None when online."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        value = os.environ.get(name)
        if value is not None:
            return f"{name}={value}" if value.upper() in TRUE_VALUES else None
    return None


def message_of(record: dict, name: str, where: str) -> str:
    """The user message of one row of the named dataset ``name``."""
    spec = NAMED[name]
    missing = [column for column in spec.columns if column not in record]
    if missing:
        raise NamedDatasetError(f"{where}: no field {missing[0]!r} for dataset '{name}' "
                                f"(fields: {', '.join(map(str, record)) or 'none'})")
    text = str(record[spec.columns[0]] or "").strip()
    if name == "mmlu" and text:
        choices = record["choices"] or []
        text += "".join(f"\n{chr(ord('A') + n)}. {str(choice).strip()}" for n, choice in enumerate(choices))
    return text


def named_texts(name: str, field: str | None = None) -> list[str]:
    """Every user message of the named dataset (``field``: that column instead), in order."""
    data = load_named(name)
    spec = NAMED[name]
    if field is not None:
        if field not in data.column_names:
            raise NamedDatasetError(f"dataset '{name}': no column {field!r} "
                                    f"(columns: {', '.join(data.column_names)})")
        return [str(value or "").strip() for value in data[field]]
    missing = [column for column in spec.columns if column not in data.column_names]
    if missing:
        raise NamedDatasetError(f"dataset '{name}' in {datasets_cache_dir()} has no column {missing[0]!r} "
                                f"(columns: {', '.join(data.column_names)})")
    return [message_of(record, name, f"dataset '{name}'") for record in data.select_columns(list(spec.columns))]


def named_digest(name: str) -> str:
    """What identifies the cached copy: its files (below the cache directory) and their sizes."""
    from bgit.config import section_hash

    data = load_named(name)
    root = datasets_cache_dir().resolve()
    files = []
    for entry in data.cache_files:
        path = Path(entry["filename"]).resolve()
        shown = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        files.append((shown, path.stat().st_size))
    return section_hash({"dataset": name, "files": sorted(files)})


def load_named(name: str):
    """The split of ``name`` as a ``datasets.Dataset`` (NamedDatasetError: one line)."""
    if name not in NAMED:
        raise NamedDatasetError(f"unknown dataset {name!r} (named datasets: {', '.join(NAMED)})")
    try:
        import datasets
    except ImportError:
        raise NamedDatasetError(f"dataset '{name}' needs the datasets package (pip install datasets)") from None
    spec, cache, offline = NAMED[name], datasets_cache_dir(), offline_variable()
    try:
        with _datasets_quiet(datasets, offline is not None):
            return datasets.load_dataset(spec.repo, spec.config, split=spec.split, cache_dir=str(cache))
    except Exception as error:  # datasets raises ConnectionError, ValueError, FileNotFoundError, its own
        first = (str(error).splitlines() or [type(error).__name__])[0]
        if offline is not None:
            raise NamedDatasetError(f"dataset '{name}' is not in the datasets cache at {cache} and the hub "
                                    f"cannot be reached ({offline})") from None
        raise NamedDatasetError(f"dataset '{name}' ({spec.repo}) could not be loaded: {first}") from None


@contextmanager
def _datasets_quiet(datasets, offline: bool):
    """No progress bars or cache warnings on the terminal, and the hub off when the environment
    says so now (``datasets`` reads it once, at import)."""
    from datasets.utils import logging as ds_logging

    verbosity, was_offline = ds_logging.get_verbosity(), datasets.config.HF_HUB_OFFLINE
    bars = datasets.utils.are_progress_bars_disabled()
    ds_logging.set_verbosity_error()
    datasets.utils.disable_progress_bars()
    datasets.config.HF_HUB_OFFLINE = offline
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = was_offline
        ds_logging.set_verbosity(verbosity)
        if not bars:
            datasets.utils.enable_progress_bars()
