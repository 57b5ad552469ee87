"""Models: what can serve as a base model (``bgit models``)."""

from __future__ import annotations

import os

from bgit.models import ModelEntry, ModelsListing, list_models

__all__ = ["ModelEntry", "ModelsListing", "models"]


def models(paths: list[str | os.PathLike] | tuple = ()) -> ModelsListing:
    """The embedded models, the Hugging Face cache's model snapshots (``$HF_HUB_CACHE``) and
    the models at ``paths`` (a model directory, a .gguf file, or a directory holding them).
    Reads no weights and never asks the hub; each entry says whether it can load."""
    return list_models(paths)
