"""What changed in the config and the generated datasets between two commits."""

from __future__ import annotations

import json

from bgit.evaluate.bakes import Bake
from bgit.evaluate.results import ConfigChange, DatasetChange
from bgit.util.yaml import load_bounded

_MISSING = "<absent>"


def flatten(value, prefix: str = "") -> dict[str, object]:
    """Nested YAML -> {'PROMPT.teacher.messages[0].content': ...}; empty containers stay leaves."""
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix or ".": value}


def _input_yml(bake: Bake) -> dict:
    text = bake.read_text("input.yml")
    data = load_bounded(text, f"{bake.short}:input.yml") if text else None
    return data if isinstance(data, dict) else {}


def config_changes(a: Bake, b: Bake) -> list[ConfigChange]:
    """input.yml key by key (added | removed | modified)."""
    old, new = (flatten(data) if data else {} for data in (_input_yml(a), _input_yml(b)))  # no file: no keys
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes.append(ConfigChange(key, None, new[key], "added"))
        elif key not in new:
            changes.append(ConfigChange(key, old[key], None, "removed"))
        elif old[key] != new[key]:
            changes.append(ConfigChange(key, old[key], new[key], "modified"))
    return changes


def _same_file(a: Bake, b: Bake, path: str) -> bool:
    ma, mb = a.manifest(path), b.manifest(path)
    if ma is not None and mb is not None:
        return ma.blake3 == mb.blake3
    return False


def _rollout_counts(bake: Bake, path: str) -> dict:
    rows = bake.read_jsonl(path)
    return {"rows": len(rows), "tokens": sum(len(r.get("response_ids") or []) for r in rows)}


def dataset_changes(a: Bake, b: Bake) -> list[DatasetChange]:
    """Per target: stims added/removed (id + text), rollout rows and response tokens old -> new."""
    out = []
    for target in sorted(set(a.targets()) | set(b.targets())):
        stim_path, rollout_path = f"targets/{target}/stim.jsonl", f"targets/{target}/rollout.jsonl"
        stims_a = {r["id"]: r.get("text", "") for r in a.read_jsonl(stim_path) if "id" in r}
        stims_b = stims_a if _same_file(a, b, stim_path) else \
            {r["id"]: r.get("text", "") for r in b.read_jsonl(stim_path) if "id" in r}
        ra = _rollout_counts(a, rollout_path)
        rb = ra if _same_file(a, b, rollout_path) else _rollout_counts(b, rollout_path)
        out.append(DatasetChange(
            target, len(stims_a), len(stims_b),
            stims_added=[{"id": i, "text": stims_b[i]} for i in stims_b if i not in stims_a],
            stims_removed=[{"id": i, "text": stims_a[i]} for i in stims_a if i not in stims_b],
            rollout_rows={"a": ra["rows"], "b": rb["rows"]},
            rollout_tokens={"a": ra["tokens"], "b": rb["tokens"]},
            rollout_changed=not _same_file(a, b, rollout_path) and a.read(rollout_path) != b.read(rollout_path)))
    return out


def metric_changes(a: Bake, b: Bake) -> dict:
    ma, mb = vars(a.record.metrics), vars(b.record.metrics)
    return {key: {"a": ma.get(key), "b": mb.get(key)} for key in sorted(set(ma) | set(mb))
            if ma.get(key) is not None or mb.get(key) is not None}


def dumps_value(value) -> str:
    if value is None:
        return _MISSING
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, default=str)
