"""Three-way merge of input.yml on its parsed structure (``bgit merge``, ``bgit revert``).

Rules, applied against the merge base's input.yml (``base``):

- A value changed on one side only takes that side (a deletion included); changed the same
  way on both sides, that value; changed differently on both, a conflict, except for
  ``BAKE.name``, a label, which keeps ours.
- Mappings merge key by key, recursively; keys keep ours' order, theirs' new keys follow.
- ``TARGET`` is read as a one-item ``TARGETS`` list, and targets merge by ``name``: both
  sides' targets are kept (ours' order, then theirs' new ones), a target changed on both
  sides merges key by key, a target deleted on one side and changed on the other is a
  conflict. One resulting target is written back as ``TARGET`` when ours wrote it that way.
- ``BAKE.datasets`` merges by ``target``; a side without the list counts as listing its own
  targets at weight 1, so the merged bake trains on both sides' targets.
- Other lists (generators, messages, stims) merge item by item like lines in git: an item
  added or removed on one side is added or removed; items both sides add at the same place
  are all kept (ours first); both sides changing the same run of items differently is a
  conflict on the whole list.

The result is written back with the text of a side when it equals that side (comments and
layout survive), else with a line merge of the texts when that parses to the same data,
else dumped from the data. Conflicts are written as git does: ``<<<<<<< ours`` /
``=======`` / ``>>>>>>> theirs`` around the conflicting key, which leaves the file invalid
YAML until a person edits it.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from dataclasses import dataclass, field

import yaml

from bgit.errors import BgitError
from bgit.util.yaml import YamlLimitError, load_bounded

KEYED_LISTS = {"TARGETS": "name", "BAKE.datasets": "target"}
OURS_WINS = {"BAKE.name"}
MARKER = re.compile(r"^(<<<<<<<|=======|>>>>>>>)( |$)")


class ConfigMergeError(BgitError):
    """An input.yml that cannot be merged (not YAML, not a mapping)."""


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING = _Missing()


@dataclass
class Conflict:
    base: object
    ours: object
    theirs: object


@dataclass
class ConfigMerge:
    data: dict | None                       # the merged structure (Conflict nodes where conflicts)
    text: str | None                        # input.yml as written (markers when conflicts); None: no file
    conflicts: list[str] = field(default_factory=list)   # key paths, e.g. "BAKE.epochs"

    @property
    def clean(self) -> bool:
        return not self.conflicts


def merge_config_text(base: str | None, ours: str | None, theirs: str | None,
                      labels: tuple[str, str] = ("HEAD", "theirs")) -> ConfigMerge:
    """Merge three input.yml texts (None: the side has no input.yml)."""
    if ours is None and theirs is None:
        return ConfigMerge(None, None)
    sides = [_parse(text, name) for text, name in ((base, "base"), (ours, labels[0]), (theirs, labels[1]))]
    single = [_uses_single_target(side) for side in sides]
    normal = [_normalise(side) for side in sides]
    _explicit_datasets(normal)
    conflicts: list[str] = []
    merged = _merge(*normal, path="", conflicts=conflicts)
    merged = {} if merged is MISSING else merged
    writer = single[1] if ours is not None else single[2]   # how the side we write like spelled it
    if writer:
        merged = _single_target(merged, implicit_name=writer == "implicit")
        if "TARGET" in merged:  # name the keys as the file does
            conflicts = [re.sub(r"^TARGETS(\[[^]]*\])?", "TARGET", key) for key in conflicts]
    if conflicts:
        return ConfigMerge(merged, render_with_markers(merged, labels), conflicts)
    return ConfigMerge(merged, _text_for(merged, base, ours, theirs, sides), [])


def _parse(text: str | None, name: str) -> dict:
    if text is None:
        return {}
    try:
        data = load_bounded(text, f"{name}:input.yml")
    except (yaml.YAMLError, YamlLimitError) as error:
        raise ConfigMergeError(f"{name}:input.yml is not valid YAML ({str(error).splitlines()[0]}); "
                               "it cannot be merged") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigMergeError(f"{name}:input.yml is not a mapping of sections; it cannot be merged")
    return data


def _uses_single_target(data: dict) -> str | None:
    target = data.get("TARGET")
    if not isinstance(target, dict):
        return None
    return "named" if "name" in target else "implicit"


def _normalise(data: dict) -> dict:
    """A copy with TARGET as a one-item TARGETS list (in the same place among the sections)."""
    data = copy.deepcopy(data)
    if not isinstance(data.get("TARGET"), dict) or "TARGETS" in data:
        return data
    out = {}
    for key, value in data.items():
        if key == "TARGET":
            out["TARGETS"] = [{"name": "default", **value} if "name" not in value else value]
        else:
            out[key] = value
    return out


def _single_target(data: dict, implicit_name: bool) -> dict:
    """TARGETS of one target written back as TARGET (each side of a conflict too)."""
    def single(value):
        if isinstance(value, Conflict):
            sides = [single(v) for v in (value.base, value.ours, value.theirs)]
            return Conflict(*sides) if all(v is not None for v in sides) else None
        if value is MISSING:
            return MISSING
        if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
            return None
        target = dict(value[0])
        if implicit_name and target.get("name") == "default":
            target.pop("name")
        return target

    target = single(data.get("TARGETS"))
    if target is None:
        return data
    return {("TARGET" if key == "TARGETS" else key): (target if key == "TARGETS" else value)
            for key, value in data.items()}


def _explicit_datasets(sides: list[dict]) -> None:
    """When some side lists BAKE.datasets, the others list their own targets at weight 1."""
    def listed(side):
        return isinstance(side.get("BAKE"), dict) and "datasets" in side["BAKE"]

    if not any(listed(side) for side in sides):
        return
    for side in sides:
        if listed(side) or not side or not isinstance(side.get("BAKE") or {}, dict):
            continue
        names = [t.get("name", "default") for t in side.get("TARGETS") or [] if isinstance(t, dict)]
        side["BAKE"] = {**(side.get("BAKE") or {}), "datasets": [{"target": n, "weight": 1.0} for n in names]}


# -- the merge -------------------------------------------------------------------------------

def _merge(base, ours, theirs, path: str, conflicts: list[str]):
    if ours == theirs:
        return ours
    if ours == base:
        return theirs
    if theirs == base:
        return ours
    if path in OURS_WINS:
        return ours
    if all(isinstance(v, dict) or (v is MISSING and i == 0) for i, v in enumerate((base, ours, theirs))):
        return _merge_mapping({} if base is MISSING else base, ours, theirs, path, conflicts)
    if all(isinstance(v, list) or (v is MISSING and i == 0) for i, v in enumerate((base, ours, theirs))):
        merged = _merge_list([] if base is MISSING else base, ours, theirs, path, conflicts)
        if merged is not None:
            return merged
    conflicts.append(path or "(top level)")
    return Conflict(base, ours, theirs)


def _merge_mapping(base: dict, ours: dict, theirs: dict, path: str, conflicts: list[str],
                   keyed: bool = False) -> dict:
    keys = list(ours) + [k for k in theirs if k not in ours]
    out = {}
    for key in keys:
        child = f"{path}[{key}]" if keyed else f"{path}.{key}" if path else str(key)
        value = _merge(base.get(key, MISSING), ours.get(key, MISSING), theirs.get(key, MISSING), child, conflicts)
        if value is not MISSING:
            out[key] = value
    return out


def _merge_list(base: list, ours: list, theirs: list, path: str, conflicts: list[str]) -> list | None:
    """A merged list, or None when it conflicts as a whole."""
    key = KEYED_LISTS.get(path)
    if key and all(_keyed(items, key) for items in (base, ours, theirs)):
        as_maps = [{item[key]: item for item in items} for items in (base, ours, theirs)]
        merged = _merge_mapping(*as_maps, path=path, conflicts=conflicts, keyed=True)
        return list(merged.values())
    def items(b: list, o: list, t: list) -> list | None:  # a run changed on both sides, item by item
        found: list[str] = []
        merged = [_merge(*trio, path=f"{path}[{i}]", conflicts=found) for i, trio in enumerate(zip(b, o, t))]
        return None if found else merged

    return merge_sequences(base, ours, theirs, items)


def _keyed(items: list, key: str) -> bool:
    names = [item.get(key) for item in items if isinstance(item, dict)]
    return len(names) == len(items) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)


def merge_sequences(base: list, ours: list, theirs: list, items=None) -> list | None:
    """diff3 on list items (lines of git's merge): None when both sides changed the same run
    of items differently; insertions of both sides at the same place are all kept. ``items``
    (base, ours, theirs) -> merged run or None: tried on runs of equal length on all sides
    (the same items edited on both sides)."""
    ident = [[json.dumps(item, sort_keys=True, default=str) for item in items] for items in (base, ours, theirs)]
    to_ours, to_theirs = _matches(ident[0], ident[1]), _matches(ident[0], ident[2])
    out: list = []
    ib = io = it = 0
    while ib < len(base) or io < len(ours) or it < len(theirs):
        if ib < len(base) and to_ours.get(ib) == io and to_theirs.get(ib) == it:
            out.append(ours[io])
            ib, io, it = ib + 1, io + 1, it + 1
            continue
        jb = next((j for j in range(ib, len(base)) if to_ours.get(j, -1) >= io and to_theirs.get(j, -1) >= it),
                  len(base))
        jo, jt = (to_ours[jb], to_theirs[jb]) if jb < len(base) else (len(ours), len(theirs))
        chunk = _merge_chunk(base[ib:jb], ours[io:jo], theirs[it:jt], ident[1][io:jo], ident[2][it:jt])
        if chunk is None and items is not None and jb - ib == jo - io == jt - it:
            chunk = items(base[ib:jb], ours[io:jo], theirs[it:jt])
        if chunk is None:
            return None
        out += chunk
        ib, io, it = jb, jo, jt
    return out


def _matches(a: list[str], b: list[str]) -> dict[int, int]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return {blk.a + k: blk.b + k for blk in matcher.get_matching_blocks() for k in range(blk.size)}


def _merge_chunk(base, ours, theirs, ours_ids, theirs_ids) -> list | None:
    if ours == base:
        return theirs
    if theirs == base or ours == theirs:
        return ours
    if not base:  # both sides inserted here: keep all, ours first
        return ours + [item for item, ident in zip(theirs, theirs_ids) if ident not in ours_ids]
    return None


# -- writing it back -------------------------------------------------------------------------

def _text_for(merged: dict, base, ours, theirs, sides: list[dict]) -> str:
    lines = merge_sequences(*[(text or "").splitlines(keepends=True) for text in (base, ours, theirs)])
    if lines is not None:
        text = "".join(lines)
        try:
            if load_bounded(text, "merged input.yml") == merged:
                return text
        except (yaml.YAMLError, YamlLimitError):
            pass
    if ours is not None and merged == sides[1]:
        return ours
    if theirs is not None and merged == sides[2]:
        return theirs
    return dump(merged)


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def render_with_markers(data: dict, labels: tuple[str, str]) -> str:
    return "\n".join(_emit_mapping(data, 0, labels)) + "\n"


def _has_conflict(value) -> bool:
    if isinstance(value, Conflict):
        return True
    if isinstance(value, dict):
        return any(_has_conflict(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_conflict(v) for v in value)
    return False


def _emit_mapping(data: dict, indent: int, labels) -> list[str]:
    pad, lines = " " * indent, []
    for key, value in data.items():
        if isinstance(value, Conflict):
            lines += [f"<<<<<<< {labels[0]}", *_dump_pair(key, value.ours, indent), "=======",
                      *_dump_pair(key, value.theirs, indent), f">>>>>>> {labels[1]}"]
        elif isinstance(value, dict) and _has_conflict(value):
            lines += [f"{pad}{_key(key)}:", *_emit_mapping(value, indent + 2, labels)]
        elif isinstance(value, list) and _has_conflict(value):
            lines.append(f"{pad}{_key(key)}:")
            for item in value:
                lines += _emit_item(item, indent + 2, labels)
        else:
            lines += _dump_pair(key, value, indent)
    return lines


def _emit_item(item, indent: int, labels) -> list[str]:
    pad = " " * indent
    if not (isinstance(item, dict) and _has_conflict(item)):
        return [pad + line for line in dump([item]).splitlines()]
    body = _emit_mapping(item, indent + 2, labels)
    if body and body[0].startswith(pad + "  ") and not MARKER.match(body[0]):
        return [pad + "- " + body[0][indent + 2:], *body[1:]]
    return [pad + "-", *body]


def _dump_pair(key, value, indent: int) -> list[str]:
    if value is MISSING:
        return []
    return [" " * indent + line for line in dump({key: value}).splitlines()]


def _key(key) -> str:
    return dump({key: 0}).rsplit(":", 1)[0]


def conflict_marker_line(text: str) -> int | None:
    """The line number of the first git conflict marker in ``text``, if any."""
    for number, line in enumerate(text.splitlines(), 1):
        if MARKER.match(line):
            return number
    return None
