"""Reading YAML nodes into config classes, driven by their declarations.

:class:`Walker` reads a mapping into a config class: :func:`bgit.config.declare.layout` says
which YAML keys the class has, each value is read by its declared type (or by a
``read_<kind>`` method for special values) and checked against its declared range or choices;
the class's ``__post_init__`` then resolves derived defaults and checks rules across fields,
and its problems are reported at the lines of the keys involved. Nothing here knows input.yml's
sections: :mod:`bgit.config.load` adds those.
"""

from __future__ import annotations

from typing import Any

import yaml

from bgit.config.declare import Declared, Group, Slot, declared_fields, deferred, layout, normalise, value_problem
from bgit.config.nodes import Entry, Invalid, Reader


class Walker:
    def __init__(self, reader: Reader, root_class: type):
        self.r = reader
        self.root_class = root_class  # the class chains start from
        self.where: dict[tuple, Entry] = {}  # chain from the root object -> the value's entry
        self.attempted: set[tuple] = set()  # chains whose key was written (valid or not)

    def read_object(self, cls: type, entry: Entry | None, chain: tuple):
        """A config of class ``cls`` from a mapping (None: every default)."""
        values: dict[tuple, Any] = {}
        written: dict[tuple, Entry] = {}
        if entry is not None:
            self.where[chain] = entry
            self.guard(self.read_group, layout(cls), entry, values, written, chain)
            if not self.check_required(cls, entry, written):
                raise Invalid()
        return self.build(cls, (), values, written, chain, entry)

    def read_group(self, group: Group, entry: Entry, values: dict, written: dict, base: tuple) -> None:
        shorthand = getattr(group.owner, "SHORTHAND", None)
        if shorthand and isinstance(entry.node, yaml.ScalarNode) and not self.r.is_null(entry):
            self.read_slot(group.children[shorthand], entry, values, written, base)
            written[group.chain] = entry
            return
        mapping = self.r.mapping(entry, list(group.children), group.aliases)
        if group.owner is not None and not self.r.is_null(entry):
            written[group.chain] = entry
            self.where[base + group.chain] = entry
        self.read_children(group, mapping, values, written, base)

    def read_children(self, group: Group, mapping: dict[str, Entry], values: dict, written: dict, base: tuple):
        for key, entry in mapping.items():
            child = group.children[key]
            if isinstance(child, Group):
                self.guard(self.read_group, child, entry, values, written, base)
            else:
                self.read_slot(child, entry, values, written, base)

    def read_slot(self, slot: Slot, entry: Entry, values: dict, written: dict, base: tuple) -> None:
        decl, chain = slot.decl, base + slot.chain
        self.attempted.add(chain)
        try:
            value = self.read_value(decl, entry, chain)
        except Invalid:
            return
        values[slot.chain], written[slot.chain] = value, entry
        self.where[chain] = entry
        spec = decl.spec
        if spec.notice and (spec.notice_if is None or spec.notice_if(value)):
            self.r.note(entry.line, entry.path, spec.notice)

    def read_value(self, decl: Declared, entry: Entry, chain: tuple) -> Any:
        r, info = self.r, decl.info
        if info.optional and r.is_null(entry):
            return None
        if decl.spec.kind is not None:
            value = getattr(self, f"read_{decl.spec.kind}")(entry, chain)
        elif info.kind == "list" and info.item.kind == "object":
            value = self.objects(info.item.cls, entry, chain)
        else:
            value = self.plain_value(info, entry, decl)
        value = normalise(decl, value)
        numeric = info.kind in ("int", "float") and isinstance(entry.node, yaml.ScalarNode)
        problem = value_problem(decl.spec, value, written=entry.node.value if numeric else _written(entry.node))
        if problem is not None:
            raise r.fail(entry, problem)
        return value

    def plain_value(self, info, entry: Entry, decl: Declared) -> Any:
        r = self.r
        if info.kind == "str" and decl.spec.choices and isinstance(entry.node, yaml.ScalarNode) \
                and entry.node.value in decl.spec.choices:
            return entry.node.value  # `autocast: off`, which YAML 1.1 would read as false
        readers = {"bool": r.boolean, "int": r.integer, "float": r.number,
                   "str": lambda e: r.string(e, allow_empty=True)}
        if info.kind in readers:
            return readers[info.kind](entry)
        if info.kind == "dict":
            value = r.data(entry)
            if not isinstance(value, dict):
                raise r.expected(entry, "a mapping")
            return value
        if info.kind == "union":  # str | list[str]
            return r.string_list(entry) if isinstance(entry.node, yaml.SequenceNode) else r.string(entry)
        if info.kind == "list" and info.item.kind == "str":
            return r.string_list(entry)
        if info.kind == "list" and info.item.kind == "float":
            return [self.number_item(decl, item) for item in r.sequence(entry)]
        value = r.data(entry)
        if info.kind == "list" and not isinstance(value, list):
            raise r.expected(entry, "a list")
        return value

    def number_item(self, decl: Declared, item: Entry) -> float:
        value = self.r.number(item)
        if decl.spec.item_range is not None and value not in decl.spec.item_range:
            raise self.r.fail(item, decl.spec.item_range.message(item.node.value))
        return value

    def objects(self, cls: type, entry: Entry, chain: tuple) -> list:
        reader = self.item_reader(cls)
        result, items = [], self.r.sequence(entry)
        for index, item in enumerate(items):
            try:
                result.append(reader(item, chain + (index,)))
            except Invalid:
                pass
        if items and not result:
            raise Invalid()  # every item was wrong and reported: "must not be empty" would be noise
        return result

    def build(self, cls: type, rel: tuple, values: dict, written: dict, base: tuple, entry: Entry | None):
        """``cls(...)`` from the values read; its problems are reported at their keys' lines."""
        kwargs = {}
        for decl in declared_fields(cls):
            chain = rel + (decl.name,)
            if decl.inline:
                kwargs[decl.name] = self.build(decl.info.cls, chain, values, written, base, written.get(chain, entry))
            elif decl.spec.present:
                kwargs[decl.name] = rel in written
            elif chain in values:
                kwargs[decl.name] = values[chain]
        with deferred() as problems:
            obj = cls(**kwargs)
        for owner, chain, message in problems:
            where = base + rel + (chain if owner is obj else ())
            if where not in self.attempted or where in self.where:  # else: its value was already refused
                self.report_at(where, message, entry)
        return obj

    def check_required(self, cls: type, entry: Entry, written: dict) -> bool:
        """False (after reporting) when a required key is not written."""
        ok = True
        for decl in declared_fields(cls):
            if decl.spec.required and (decl.name,) not in written and decl.key not in _keys(entry):
                self.r.report(entry.line, f"{entry.path}.{decl.key}", f"missing ({decl.spec.required})")
                ok = False
        return ok

    def report_at(self, chain: tuple, message: str, fallback: Entry | None) -> None:
        """Report at the entry of ``chain``, else of its nearest written parent (+ the rest of the key)."""
        for depth in range(len(chain), -1, -1):
            entry = self.where.get(chain[:depth])
            if entry is not None:
                rest = _key_suffix(self.root_class, chain, depth)
                self.r.report(entry.line, f"{entry.path}{rest}" if entry.path else rest.lstrip("."), message)
                return
        self.r.report(fallback.line if fallback else 1, _key_suffix(self.root_class, chain, 0).lstrip("."), message)

    def item_reader(self, cls: type):
        """How one item of a list of ``cls`` is read (``reader(entry, chain)``)."""
        return lambda entry, chain: self.read_object(cls, entry, chain)

    def guard(self, read, *args) -> None:
        try:
            read(*args)
        except Invalid:
            pass


def _keys(entry: Entry | None) -> set[str]:
    if entry is None or not isinstance(entry.node, yaml.MappingNode):
        return set()
    return {str(key.value) for key, _ in entry.node.value if isinstance(key, yaml.ScalarNode)}


def _written(node: yaml.Node) -> str:
    """A value as written, for 'got ...' (strings quoted, numbers as typed: -1e-4)."""
    if isinstance(node, yaml.ScalarNode):
        return repr(node.value) if node.tag == "tag:yaml.org,2002:str" else (node.value or "null")
    return "a mapping" if isinstance(node, yaml.MappingNode) else "a list"


def _key_suffix(root: type, chain: tuple, depth: int) -> str:
    """The YAML keys of ``chain[depth:]`` (walking the declaration from ``root``)."""
    cls, text = root, ""
    for position, part in enumerate(chain):
        if isinstance(part, int):
            text += f"[{part}]" if position >= depth else ""
            continue
        decl = next((d for d in declared_fields(cls) if d.name == part), None) if cls else None
        if position >= depth:
            text += f".{decl.key if decl else part}"
        info = decl.info if decl else None
        if info is not None and info.kind == "list" and info.item is not None:
            info = info.item
        cls = info.cls if info is not None and info.kind == "object" else None
    return text
