"""Typed reads from composed YAML nodes, recording ``FILE:LINE: KEY`` issues.

The loader walks the node tree of ``yaml.compose`` (not the plain data of
``yaml.safe_load``) so that every value still knows the line it was written on.
A read that fails records one :class:`ConfigIssue` and raises :class:`Invalid`;
:mod:`bgit.config.load` then leaves the field at its default so that checking goes
on and ``bgit validate`` can list every problem at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from bgit.config.declare import first_non_json, suggestion
from bgit.config.errors import ConfigIssue

STR_TAG = "tag:yaml.org,2002:str"


class Invalid(Exception):
    """A value was wrong; the issue is already recorded."""


@dataclass
class Entry:
    """A value in the file: its node, dotted key path and the line of its key."""

    node: yaml.Node
    path: str
    line: int

    def item(self, index: int, node: yaml.Node) -> "Entry":
        return Entry(node, f"{self.path}[{index}]", line_of(node))

    def child(self, key: str, key_node: yaml.Node, value_node: yaml.Node) -> "Entry":
        path = f"{self.path}.{key}" if self.path else key
        return Entry(value_node, path, line_of(key_node))


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def shown(node: yaml.Node) -> str:
    """How a value is quoted back to the user in 'got ...'."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == STR_TAG:
        return repr(node.value)
    return node.value or "null"


class Reader:
    """Reads typed values from nodes of one file and collects the issues."""

    def __init__(self, filename: str):
        self.filename = filename
        self.issues: list[ConfigIssue] = []
        self.notices: list[ConfigIssue] = []
        self._constructor = yaml.SafeLoader("")

    # -- issues ---------------------------------------------------------------

    def report(self, line: int | None, key: str | None, message: str) -> None:
        self.issues.append(ConfigIssue(self.filename, line, key, message))

    def note(self, line: int | None, key: str | None, message: str) -> None:
        """A key accepted without effect here: not an error, but never silent."""
        issue = ConfigIssue(self.filename, line, key, message)
        if issue not in self.notices:
            self.notices.append(issue)

    def fail(self, entry: Entry, message: str, line: int | None = None) -> Invalid:
        self.report(line or line_of(entry.node), entry.path, message)
        return Invalid()

    def expected(self, entry: Entry, what: str) -> Invalid:
        return self.fail(entry, f"expected {what}, got {shown(entry.node)}")

    # -- containers -----------------------------------------------------------

    def mapping(
        self, entry: Entry, allowed: list[str], aliases: dict[str, str] | None = None
    ) -> dict[str, Entry]:
        """The keys of a mapping, each checked against ``allowed``; null reads as empty."""
        if self.is_null(entry):
            return {}
        if not isinstance(entry.node, yaml.MappingNode):
            raise self.expected(entry, "a mapping")
        own_keys = {id(key_node) for key_node, _ in entry.node.value}
        self._constructor.flatten_mapping(entry.node)  # resolves '<<' merge keys
        aliases = aliases or {}
        result: dict[str, Entry] = {}
        merged: set[str] = set()
        for key_node, value_node in entry.node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else shown(key_node)
            child = entry.child(key, key_node, value_node)
            name = aliases.get(key, key)
            if name not in allowed:
                hint = suggestion(key, allowed) or f"; expected one of: {', '.join(allowed)}"
                self.report(child.line, child.path, f"unknown key{hint}")
            elif name in result and name not in merged:
                self.report(child.line, child.path, f"duplicate key (first on line {result[name].line})")
            else:
                # A key written in the mapping overrides one merged in with '<<'.
                (merged.add if id(key_node) not in own_keys else merged.discard)(name)
                result[name] = child
        return result

    def sequence(self, entry: Entry) -> list[Entry]:
        """The items of a list; null reads as empty."""
        if self.is_null(entry):
            return []
        if not isinstance(entry.node, yaml.SequenceNode):
            raise self.expected(entry, "a list")
        return [entry.item(i, node) for i, node in enumerate(entry.node.value)]

    # -- scalars --------------------------------------------------------------

    def is_null(self, entry: Entry) -> bool:
        return isinstance(entry.node, yaml.ScalarNode) and self.plain(entry) is None

    def plain(self, entry: Entry) -> Any:
        """The Python value of a node, as yaml.safe_load would build it."""
        return self._constructor.construct_object(entry.node, deep=True)

    def integer(self, entry: Entry) -> int:
        value = self.plain(entry) if isinstance(entry.node, yaml.ScalarNode) else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.expected(entry, "an integer")
        return value

    def number(self, entry: Entry) -> float:
        return self._float(entry)

    def _float(self, entry: Entry) -> float:
        value = self.plain(entry) if isinstance(entry.node, yaml.ScalarNode) else None
        # PyYAML (YAML 1.1) reads `1e-4` as a string; people mean the number.
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.expected(entry, "a number")
        return float(value)

    def boolean(self, entry: Entry) -> bool:
        value = self.plain(entry) if isinstance(entry.node, yaml.ScalarNode) else None
        if not isinstance(value, bool):
            raise self.expected(entry, "true or false")
        return value

    def string(self, entry: Entry, optional: bool = False, allow_empty: bool = False) -> str | None:
        if optional and self.is_null(entry):
            return None
        value = self.plain(entry) if isinstance(entry.node, yaml.ScalarNode) else None
        if not isinstance(value, str):
            raise self.expected(entry, "a string")
        if not allow_empty and not value.strip():
            raise self.fail(entry, "must not be empty")
        return value

    def string_list(self, entry: Entry, nonempty: bool = False) -> list[str]:
        items = self.sequence(entry)
        if nonempty and not items:
            raise self.fail(entry, "must not be empty")
        values, ok = [], True
        for item in items:
            try:
                values.append(self.string(item))
            except Invalid:
                ok = False
        if not ok:
            raise Invalid()
        return values

    def data(self, entry: Entry) -> Any:
        """Free-form data (tool schemas, tool calls), checked only for JSON-compatibility."""
        value = self.plain(entry)
        bad = first_non_json(value)
        if bad is not None:
            raise self.fail(entry, f"unsupported value {bad!r} (use strings, numbers, lists and mappings)")
        return value
