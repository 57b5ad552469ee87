"""How a setting is declared, once: a dataclass field whose metadata carries its YAML key,
allowed range or choices and help (PEFT's ``field(default=..., metadata={...})`` style)::

    epochs: int = setting(2, "Passes over the training trajectories.", range=between(1, 1000))

Everything else reads these declarations: the YAML loader (:mod:`bgit.config.load`), the
reference (:mod:`bgit.config.reference` -> docs/input-yml.md), ``bgit validate`` and the
trainer. Every config class derives from :class:`Settings`, whose ``__post_init__`` runs the
same checks on a config built in Python and raises :class:`ConfigValueError` naming the key
path (``BAKE.epochs: must be in [1, 1000], got 0``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from bgit.config.errors import ConfigValueError


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``[low, high]``, either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""  # why, shown after the range: "(ZeRO-3 is not supported yet)"

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def text(self) -> str:
        """``[1, 1000]``, ``(0, 1]``, ``>= 0`` ..."""
        if self.low is not None and self.high is not None:
            return (f"{'(' if self.low_open else '['}{_number(self.low)}, "
                    f"{_number(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        return f"{'<' if self.high_open else '<='} {_number(self.high)}"

    def message(self, shown: str) -> str:
        if self.low is not None and self.high is not None:
            bound = f"must be in {self.text()}"
        elif self.low is not None:
            bound = f"must be greater than {_number(self.low)}" if self.low_open else f"must be at least {_number(self.low)}"
        else:
            bound = f"must be less than {_number(self.high)}" if self.high_open else f"must be at most {_number(self.high)}"
        return f"{bound}{' ' + self.note if self.note else ''}, got {shown}"


def between(low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False,
            note: str = "") -> Range:
    return Range(low, high, low_open, high_open, note)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else repr(x)


@dataclass(frozen=True)
class Spec:
    """Everything declared about one setting besides its type and default."""

    help: str
    key: str | None = None  # YAML key path inside the class's mapping ("teacher.messages"); "" = not in YAML
    aliases: tuple[str, ...] = ()  # other spellings of the key ("questions" for "stims")
    range: Range | None = None
    choices: tuple | None = None
    value_aliases: Mapping[str, str] = field(default_factory=dict)  # "bf16" -> "bfloat16"
    length: int | None = None  # lists: exact number of items
    item_range: Range | None = None  # lists of numbers: each item
    nonempty: bool | str = False  # lists: True or the message for an empty list
    allow_empty: bool = False  # strings: "" allowed
    kind: str | None = None  # a special reader in the loader (messages, template, data_path, ...)
    required: str | None = None  # the key must be written; text of "missing (...)"
    used_by: tuple[str, ...] | None = None  # generators: the types that read this key
    notice: str | None = None  # accepted, but with no effect here (yet): validate says so
    notice_if: Callable[[Any], bool] | None = None  # the notice only for values that pass this
    present: bool = False  # set True when the enclosing mapping is written (BAKE.deepspeed)
    hashed: bool = True  # False: not part of the config's meaning (left out of hashes, bake.yml)
    weights: bool = True  # False: cannot change the trained weights (a checkpoint survives it)


def setting(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | Any = MISSING,
            **spec: Any) -> Any:
    """A dataclass field carrying its :class:`Spec` (``metadata["spec"]``)."""
    declared = Spec(help=help, **spec)
    metadata = {"spec": declared, "help": help, "hashed": declared.hashed}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def internal(default: Any = MISSING, help: str = "", *, factory: Any = MISSING, compare: bool = True) -> Any:
    """Bookkeeping that is not a setting (the file a config came from, its notices)."""
    spec = Spec(help=help, key="", hashed=False, weights=False)
    metadata = {"spec": spec, "help": help, "hashed": False}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata, compare=compare)
    return field(default=default, metadata=metadata, compare=compare)


# -- types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeInfo:
    kind: str  # bool int float str dict list object union any
    optional: bool = False
    item: "TypeInfo | None" = None  # list items
    cls: type | None = None  # kind "object": the dataclass
    options: tuple["TypeInfo", ...] = ()  # kind "union": the alternatives

    def describe(self) -> str:
        names = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
                 "dict": "a mapping", "list": "a list", "any": "a value"}
        if self.kind == "object":
            return f"a {self.cls.__name__}"
        if self.kind == "union":
            return " or ".join(option.describe() for option in self.options)
        return names[self.kind]


def type_info(tp: Any) -> TypeInfo:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        optional = len(present) < len(args)
        if len(present) == 1:
            return dataclasses.replace(type_info(present[0]), optional=optional)
        return TypeInfo("union", optional, options=tuple(type_info(a) for a in present))
    if origin in (list, tuple):
        return TypeInfo("list", item=type_info(args[0]) if args else TypeInfo("any"))
    if origin is dict or tp is dict:
        return TypeInfo("dict")
    if dataclasses.is_dataclass(tp):
        return TypeInfo("object", cls=tp)
    simple = {bool: "bool", int: "int", float: "float", str: "str"}
    return TypeInfo(simple.get(tp, "any"))


@dataclass(frozen=True)
class Declared:
    """One field of a config class: its name, type and spec."""

    owner: type
    name: str
    info: TypeInfo
    spec: Spec
    field: dataclasses.Field

    @property
    def key(self) -> str:
        return self.name if self.spec.key is None else self.spec.key

    @property
    def inline(self) -> bool:
        """A nested config written as a mapping of its own (BAKE.optimizer)."""
        return self.info.kind == "object" and not self.info.optional and self.spec.kind is None

    def default(self) -> Any:
        if self.field.default is not MISSING:
            return self.field.default
        if self.field.default_factory is not MISSING:
            return self.field.default_factory()
        return MISSING


@functools.cache
def declared_fields(cls: type) -> tuple[Declared, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(Declared(cls, f.name, type_info(hints[f.name]), f.metadata["spec"], f)
                 for f in dataclasses.fields(cls) if "spec" in f.metadata)


def declared(cls: type, name: str) -> Declared:
    return next(d for d in declared_fields(cls) if d.name == name)


# -- checks shared by the loader and __post_init__ ------------------------------------------


def suggestion(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for a close choice, compared case-insensitively."""
    lowered = {str(choice).lower(): str(choice) for choice in choices}
    close = difflib.get_close_matches(str(word).lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def shown(value: Any) -> str:
    """A Python value as error messages quote it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def first_non_json(value: Any) -> Any:
    """The first part of ``value`` that is not JSON data (None when it all is)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return key
            bad = first_non_json(item)
            if bad is not None:
                return bad
        return None
    if isinstance(value, list):
        return next((bad for bad in map(first_non_json, value) if bad is not None), None)
    if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return None
    return value


def type_problem(info: TypeInfo, value: Any) -> str | None:
    """Why ``value`` is not of type ``info`` (None when it is)."""
    if value is None:
        return None if info.optional else f"expected {info.describe()}, got None"
    ok = {
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "str": lambda v: isinstance(v, str),
        "dict": lambda v: isinstance(v, dict) and first_non_json(v) is None,
        "any": lambda v: first_non_json(v) is None or dataclasses.is_dataclass(v),
        "object": lambda v: isinstance(v, info.cls),
        "list": lambda v: isinstance(v, list) and all(type_problem(info.item, i) is None for i in v),
        "union": lambda v: any(type_problem(o, v) is None for o in info.options),
    }[info.kind]
    return None if ok(value) else f"expected {info.describe()}, got {shown(value)}"


def value_problem(spec: Spec, value: Any, written: str | None = None) -> str | None:
    """Why a value of the right type breaks ``spec`` (range, choices, length...)."""
    quoted = written if written is not None else shown(value)
    if value is None:
        return None
    if spec.choices is not None and not isinstance(value, (list, dict)) and value not in spec.choices:
        listed = ", ".join(map(str, spec.choices))
        hint = suggestion(value, spec.choices) if isinstance(value, str) else ""
        return f"expected one of {listed}, got {quoted}{hint}"
    if spec.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and value not in spec.range:
        return spec.range.message(quoted)
    if isinstance(value, str) and not spec.allow_empty and not value.strip():
        return "must not be empty"
    if isinstance(value, list):
        if spec.nonempty and not value:
            return spec.nonempty if isinstance(spec.nonempty, str) else "must not be empty"
        if spec.length is not None and len(value) != spec.length:
            return f"expected {spec.length} values, got {len(value)}"
        for item in value:
            if spec.item_range is not None and item not in spec.item_range:
                return spec.item_range.message(shown(item))
            if isinstance(item, str) and not item.strip():
                return "must not contain empty strings"
    return None


def normalise(decl: Declared, value: Any) -> Any:
    """The canonical form of a valid value: 1 -> 1.0 for numbers, tuples -> lists, 'bf16' -> 'bfloat16'."""
    if isinstance(value, str) and value in decl.spec.value_aliases:
        return decl.spec.value_aliases[value]
    if isinstance(value, tuple):
        value = list(value)
    if decl.info.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list) and decl.info.item is not None and decl.info.item.kind == "float":
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


# -- the base class ---------------------------------------------------------------------------

Chain = tuple  # field names and list indices from an object down to a value: ("lora", "bias")

_deferred: ContextVar[list | None] = ContextVar("bgit_config_deferred", default=None)


@contextmanager
def deferred():
    """Collect problems of configs built inside (the loader reports them with their lines)
    instead of raising: yields a list of ``(object, chain, message)``."""
    sink: list = []
    token = _deferred.set(sink)
    try:
        yield sink
    finally:
        _deferred.reset(token)


class Settings:
    """Base of every config class: ``__post_init__`` normalises, checks every declared field,
    resolves derived defaults (:meth:`_resolve`) and checks rules across fields (:meth:`_problems`)."""

    PATH: ClassVar[str] = ""  # YAML path of this class's mapping, for messages ("BAKE.optimizer")

    def __post_init__(self) -> None:
        problems = self._field_problems()
        if not problems:
            self._resolve()
            problems = self._problems()
        sink = _deferred.get()
        if sink is not None:
            sink.extend((self, chain, message) for chain, message in problems)
        elif problems:
            chain, message = problems[0]
            raise ConfigValueError(key_path(type(self), chain), message)

    def _field_problems(self) -> list[tuple[Chain, str]]:
        problems = []
        for decl in declared_fields(type(self)):
            if decl.spec.key == "":
                continue
            value = getattr(self, decl.name)
            problem = type_problem(decl.info, value)
            if problem is None:
                value = normalise(decl, value)
                setattr(self, decl.name, value)
                problem = value_problem(decl.spec, value)
            if problem is not None:
                problems.append(((decl.name,), problem))
        return problems

    def _resolve(self) -> None:
        """Fill in defaults that depend on other values."""

    def _problems(self) -> list[tuple[Chain, str]]:
        """Rules across fields: ``[(chain, message)]``."""
        return []


def key_path(cls: type, chain: Chain) -> str:
    """The YAML key path of ``chain`` below ``cls``: ("lora", "r") on BakeConfig ->
    'BAKE.model.baked_adapter_config.r'; list indices become ``[i]``."""
    path, current = cls.PATH, cls
    for part in chain:
        if isinstance(part, int):
            path = f"{path}[{part}]"
            continue
        decl = next((d for d in declared_fields(current) if d.name == part), None) if current else None
        key = decl.key if decl is not None else str(part)
        path = f"{path}.{key}" if path else key
        info = decl.info if decl is not None else None
        if info is not None and info.kind == "list" and info.item is not None:
            info = info.item
        current = info.cls if info is not None and info.kind == "object" else None
    return path


def from_dict(cls: type, data: Mapping[str, Any]):
    """Build ``cls`` from plain data keyed by field names (the inverse of ``config_to_dict``);
    nested mappings become nested configs. Checked like any other construction."""
    names = {d.name: d for d in declared_fields(cls)}
    kwargs = {}
    for name, value in data.items():
        decl = names.get(name)
        if decl is None:
            raise ConfigValueError(key_path(cls, (name,)), f"unknown setting{suggestion(name, names)}")
        kwargs[name] = _from_plain(decl.info, value)
    return cls(**kwargs)


def _from_plain(info: TypeInfo, value: Any) -> Any:
    if info.kind == "object" and isinstance(value, Mapping):
        return from_dict(info.cls, value)
    if info.kind == "list" and info.item is not None and info.item.kind == "object" and isinstance(value, list):
        return [from_dict(info.item.cls, v) if isinstance(v, Mapping) else v for v in value]
    return value


# -- the YAML layout of a class ----------------------------------------------------------------


@dataclass
class Slot:
    """A YAML key holding one field's value; ``chain``: field names from the laid-out class."""

    chain: Chain
    decl: Declared


@dataclass
class Group:
    """A YAML mapping. ``owner``: the config class it builds (None for a mapping that only
    groups keys, like PROMPT.teacher); ``chain``: where that object sits."""

    owner: type | None
    chain: Chain
    children: dict = field(default_factory=dict)  # YAML key -> Slot | Group
    aliases: dict = field(default_factory=dict)  # other spelling -> YAML key


@functools.cache
def layout(cls: type, chain: Chain = ()) -> Group:
    """The YAML keys of ``cls``: nested configs written as mappings are laid out inside it,
    and multi-part keys ('model.baked_adapter_config') make intermediate mappings."""
    group = Group(cls, chain)
    for decl in declared_fields(cls):
        if decl.key == "":
            continue
        *parents, last = decl.key.split(".")
        node = group
        for part in parents:
            node = node.children.setdefault(part, Group(None, chain))
        here = chain + (decl.name,)
        if decl.inline:
            sub = layout(decl.info.cls, here)  # cached: copied, never changed in place
            existing = node.children.get(last)
            before = (existing.children, existing.aliases) if isinstance(existing, Group) else ({}, {})
            # BAKE.model holds BakeModelConfig's keys and baked_adapter_config (BakeConfig.lora)
            node.children[last] = Group(sub.owner, here, {**before[0], **sub.children}, {**before[1], **sub.aliases})
        else:
            node.children[last] = Slot(here, decl)
            node.aliases.update({alias: last for alias in decl.spec.aliases})
    return group
