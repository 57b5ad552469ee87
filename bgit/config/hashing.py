"""Canonical JSON and hashes of config sections (the pipeline's phase keys).

Two configs that mean the same thing hash the same however they were written (key
order, comments, ``1e-4`` or ``0.0001``, ``TARGET`` or a one-item ``TARGETS``),
because the hash is taken of the parsed, typed and default-resolved values, not of
the text.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import PurePath
from typing import Any

import blake3


def config_to_dict(obj: Any) -> Any:
    """Plain dicts/lists/scalars of a config dataclass (fields marked hashed=False left out)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: config_to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.metadata.get("hashed", True)
        }
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                raise TypeError(f"cannot hash a mapping with a non-string key: {key!r}")
        return {key: config_to_dict(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(item) for item in obj]
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"cannot hash a non-finite number: {obj!r}")
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"cannot hash a value of type {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, floats as their shortest round-trip repr."""
    return json.dumps(config_to_dict(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def section_hash(obj: Any) -> str:
    """Hex BLAKE3 of :func:`canonical_json` of a dataclass, dict or list."""
    return blake3.blake3(canonical_json(obj).encode("utf-8")).hexdigest()
