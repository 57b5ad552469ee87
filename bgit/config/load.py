"""input.yml -> :class:`InputConfig`, with ``FILE:LINE: KEY: message`` errors.

The walk is generic (:class:`bgit.config.walk.Walker`): the declarations in
:mod:`bgit.config.schema` say which keys exist, their types, ranges and defaults, and the
config classes' own ``__post_init__`` resolve derived defaults (``lora_alpha`` = 2*r,
``BAKE.datasets`` = every target, a generator's ``seed`` and ``model``) and check rules across
fields, reported here at the lines of the keys involved. What is structure rather than a
setting stays here: TARGET vs TARGETS, a target's PROMPT falling back to the top-level one,
which keys a generator type reads, messages, templates and the files a config names.

YAML comes through :func:`bgit.util.yaml.compose_bounded` (size and alias-expansion caps): an
input.yml may come from a commit someone else made.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import yaml

from bgit.config.declare import Slot, declared_fields, deferred, layout, suggestion
from bgit.config.errors import ConfigError, ConfigIssue, ConfigPathError
from bgit.config.nodes import Entry, Invalid, Reader, line_of
from bgit.config.paths import find_repository_root, resolve_config_file
from bgit.config.schema import (ROLES, TEMPLATE_VARIABLES, BakeConfig, GeneratorConfig, InputConfig,
                                ModelConfig, PromptConfig, TargetConfig)
from bgit.config.walk import Walker, _keys, _written
from bgit.util.yaml import YamlLimitError, compose_bounded

SECTIONS = ["MODEL", "PROMPT", "TARGET", "TARGETS", "BAKE"]
NO_TEACHER = "at least one teacher message is required (the prompt to bake in)"
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
MAX_TEMPLATE_BYTES = 1 << 20


def load_config(path: str | Path, root: str | Path | None = None) -> InputConfig:
    """Read and check an input.yml; raises :class:`ConfigError` naming file, line and key.

    Files it names must stay inside ``root`` (the repository root); None: the repository
    that holds the file, else the file's own directory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), None, None, "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigIssue(str(path), None, None, "is a directory, not a file")]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([ConfigIssue(str(path), None, None, f"not UTF-8 text ({error.reason})")]) from None
    except OSError as error:
        raise ConfigError([ConfigIssue(str(path), None, None, f"cannot read it ({error.strerror})")]) from None
    return parse_config(text, str(path), check_files=True, root=root)


def parse_config(text: str, filename: str = "input.yml", check_files: bool = False,
                 root: str | Path | None = None) -> InputConfig:
    """Check the YAML ``text`` of ``filename``. ``check_files``: also check the files it names
    (relative to the directory of ``filename``, inside ``root``; see :func:`load_config`)."""
    reader = Reader(filename)
    try:
        node = compose_bounded(text, filename)
    except YamlLimitError as error:
        raise ConfigError([ConfigIssue(filename, None, "yaml", error.reason)]) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([ConfigIssue(filename, line, "yaml", error.problem or str(error))]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigIssue(filename, 1, "yaml", str(error).splitlines()[0])]) from None
    config_dir = Path(filename).parent
    if root is None and check_files:
        root = find_repository_root(config_dir)
    config = _Loader(reader, config_dir if check_files else None, Path(root) if root else None).config(node)
    if reader.issues:
        raise ConfigError(sorted(reader.issues, key=lambda issue: issue.line or 0))
    config.source = filename
    config.root = str(Path(root).resolve()) if root else None
    config.notices = sorted(reader.notices, key=lambda issue: issue.line or 0)
    return config


def resolve_path(cfg: InputConfig, path: str, root: str | Path | None = None, key: str = "path") -> Path:
    """The real path of a file ``cfg`` names, checked right before it is read (see
    :mod:`bgit.config.paths`); ``root`` defaults to the one the config was loaded with.
    Raises :class:`ConfigError` ``FILE: KEY: reason``."""
    root = root if root is not None else cfg.root
    try:
        return resolve_config_file(path, Path(cfg.source).parent, Path(root) if root else None)
    except ConfigPathError as error:
        raise ConfigError([ConfigIssue(cfg.source, None, key, error.reason)]) from None


def template_problem(text: str, kind: str) -> str | None:
    """Why ``text`` is not a usable string.Template for a ``kind`` generator (None when it is):
    an invalid ``$``, a placeholder it does not fill, or a missing required one."""
    needed = TEMPLATE_VARIABLES.get(kind, ("numq", "prompt_u"))
    found = set()
    for match in string.Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            return "invalid '$' placeholder (write $$ for a literal $)"
        name = match.group("named") or match.group("braced")
        if name is not None and name not in needed:
            allowed = ", ".join(f"${{{n}}}" for n in needed)
            return f"unknown placeholder ${{{name}}}{suggestion(name, needed)} (allowed: {allowed})"
        if name:
            found.add(name)
    missing = [f"${{{n}}}" for n in needed if n not in found]
    return f"template is missing {', '.join(missing)}" if missing else None


class _SpecialValues:
    """Values with a reader of their own (``Spec.kind``): messages, templates, files, splits."""

    def read_messages(self, entry: Entry, chain: tuple) -> list[dict]:
        result, ok = [], True
        for item in self.r.sequence(entry):
            try:
                result.append(self.message(item))
            except Invalid:
                ok = False
        if not ok:
            raise Invalid()
        return result

    def message(self, entry: Entry) -> dict:
        r = self.r
        m = r.mapping(entry, ["role", "content", "name", "tool_calls", "tool_call_id"])
        if "role" not in m:
            raise r.fail(entry, f"missing key 'role' (one of {', '.join(ROLES)})")
        role = r.string(m["role"], allow_empty=True)
        if role not in ROLES:
            raise r.fail(m["role"], f"expected one of {', '.join(ROLES)}, got {role!r}{suggestion(role, ROLES)}")
        message = {"role": role}
        if "content" in m:
            message["content"] = r.string(m["content"], allow_empty=True)
        elif "tool_calls" not in m:
            raise r.fail(entry, "missing key 'content'")
        for key in ("name", "tool_call_id"):
            if key in m:
                message[key] = r.string(m[key])
        if "tool_calls" in m:
            message["tool_calls"] = self.mappings(m["tool_calls"])
        return message

    def read_tools(self, entry: Entry, chain: tuple) -> list[dict]:
        return self.mappings(entry)

    def mappings(self, entry: Entry) -> list[dict]:
        result = []
        for item in self.r.sequence(entry):
            value = self.r.data(item)
            if not isinstance(value, dict):
                raise self.r.expected(item, "a mapping")
            result.append(value)
        return result

    def read_prompt(self, entry: Entry, chain: tuple) -> PromptConfig:
        """A target's own PROMPT; the parts it leaves out come from the top-level one."""
        prompt = self.read_object(PromptConfig, entry, chain)
        for decl in declared_fields(PromptConfig):
            if chain + (decl.name,) not in self.attempted:
                setattr(prompt, decl.name, getattr(self.top_prompt, decl.name))
        return prompt

    def read_target_name(self, entry: Entry, chain: tuple) -> str:
        name = self.r.string(entry)
        if not TARGET_NAME.match(name):
            raise self.r.fail(entry, f"invalid target name {name!r} (use letters, digits, '.', '_' and '-')")
        return name

    def read_split(self, entry: Entry, chain: tuple) -> float:
        """A fraction, or a pair [train, eval] of non-negative weights (the hosted tool's form)."""
        if not isinstance(entry.node, yaml.SequenceNode):
            return self.r.number(entry)
        items = self.r.sequence(entry)
        if len(items) != 2:
            raise self.r.fail(entry, f"expected a number or a pair [train, eval], got {len(items)} values")
        train, held_out = (self.r.number(item) for item in items)
        if train <= 0 or held_out < 0:
            raise self.r.fail(entry, f"expected train > 0 and eval >= 0, got [{_written(items[0].node)}, "
                                     f"{_written(items[1].node)}]")
        return train / (train + held_out)

    def read_template(self, entry: Entry, chain: tuple) -> str:
        text = self.r.string(entry)
        if len(text.encode("utf-8")) > MAX_TEMPLATE_BYTES:
            raise self.r.fail(entry, f"template is over {MAX_TEMPLATE_BYTES} bytes")
        self.check_template(entry, text)
        return text

    def check_template(self, entry: Entry, text: str) -> None:
        problem = template_problem(text, self.generator_type or "")
        if problem:
            raise self.r.fail(entry, problem)

    def read_data_path(self, entry: Entry, chain: tuple) -> str:
        written = self.r.string(entry)
        self.checked_file(entry, written)
        return written

    def read_template_file(self, entry: Entry, chain: tuple) -> str:
        written = self.r.string(entry)
        real = self.checked_file(entry, written)
        if real is None:
            return written
        if not real.is_file():
            raise self.r.fail(entry, f"{written!r} is not a file")
        if real.stat().st_size > MAX_TEMPLATE_BYTES:
            raise self.r.fail(entry, f"{written!r} is over {MAX_TEMPLATE_BYTES} bytes")
        try:
            text = real.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise self.r.fail(entry, f"{written!r} is not UTF-8 text ({error.reason})") from None
        self.check_template(entry, text)
        return written

    def checked_file(self, entry: Entry, written: str) -> Path | None:
        """The real path of a file the config names (None without file-system checks)."""
        if self.base_dir is None:  # text only (e.g. a commit's input.yml): nothing is read here
            return None
        try:
            return resolve_config_file(written, self.base_dir, self.root)
        except ConfigPathError as error:
            raise self.r.fail(entry, error.reason) from None


class _Loader(_SpecialValues, Walker):
    """input.yml's structure on top of the generic walk: sections, TARGET vs TARGETS, a
    target's PROMPT falling back to the top-level one, which keys a generator type reads."""

    def __init__(self, reader: Reader, base_dir: Path | None, root: Path | None):
        super().__init__(reader, InputConfig)
        self.base_dir = base_dir  # None: no file-system checks
        self.root = root
        self.top_prompt = PromptConfig()
        self.generator_type: str | None = None

    def item_reader(self, cls: type):
        return self.generator if cls is GeneratorConfig else super().item_reader(cls)

    # -- top level --------------------------------------------------------------------------

    def config(self, root: yaml.Node | None) -> InputConfig:
        r = self.r
        if root is None:
            r.report(1, None, "the file is empty; expected the sections PROMPT, TARGET and BAKE")
            return InputConfig()
        top = Entry(root, "", line_of(root))
        if not isinstance(root, yaml.MappingNode):
            r.report(top.line, None, "expected a mapping of sections (MODEL, PROMPT, TARGET, BAKE)")
            return InputConfig()
        sections = r.mapping(top, SECTIONS)
        model = self.read_object(ModelConfig, sections.get("MODEL"), ("model",))
        prompt_entry = sections.get("PROMPT")
        if prompt_entry is not None:
            self.top_prompt = self.read_object(PromptConfig, prompt_entry, ("prompt",))
        targets = self.targets(sections, prompt_entry)
        bake = self.read_object(BakeConfig, sections.get("BAKE"), ("bake",))
        self.drop_repeated_datasets(bake)
        with deferred() as problems:
            config = InputConfig(model=model, prompt=self.top_prompt, targets=targets, bake=bake)
        for _owner, chain, message in problems:
            self.report_at(chain, message, top)
        return config

    def teacher_missing(self, prompt: PromptConfig, chain: tuple) -> bool:
        """No teacher message, and not because the written ones were invalid (already reported)."""
        messages = chain + ("teacher_messages",)
        invalid = messages in self.attempted and messages not in self.where
        return not prompt.teacher_messages and not invalid

    def targets(self, sections: dict[str, Entry], prompt_entry: Entry | None) -> list[TargetConfig]:
        r = self.r
        single, several = sections.get("TARGET"), sections.get("TARGETS")
        if single and several:
            r.report(several.line, "TARGETS", f"use either TARGET or TARGETS, not both (TARGET is on line {single.line})")
            return []
        if single is None and several is None:
            r.report(1, "TARGET", "missing section (or TARGETS, a list of targets)")
            return []
        entries = [single] if single else self.items(several)
        targets: list[TargetConfig] = []
        name_lines: dict[str, int] = {}
        for index, entry in enumerate(entries):
            target = self.target(entry, named=several is not None, chain=("targets", index))
            if target is None:
                continue
            name_entry = self.where.get(("targets", index, "name"), entry)
            if target.name in name_lines:
                r.report(name_entry.line, name_entry.path if name_entry is not entry else f"{entry.path}.name",
                         f"duplicate target name {target.name!r} (first on line {name_lines[target.name]})")
                continue
            name_lines[target.name] = name_entry.line
            targets.append(target)
        if any(t.prompt is None for t in targets):
            if prompt_entry is None:
                r.report(1, "PROMPT", "missing section (the teacher prompt to bake in)")
            elif self.teacher_missing(self.top_prompt, ("prompt",)):
                where = self.where.get(("prompt", "teacher_messages"), prompt_entry)
                r.report(where.line, "PROMPT.teacher.messages", NO_TEACHER)
        return targets

    def items(self, entry: Entry) -> list[Entry]:
        try:
            items = self.r.sequence(entry)
        except Invalid:
            return []
        if not items:
            self.r.report(entry.line, entry.path, "at least one target is required")
        return items

    def target(self, entry: Entry, named: bool, chain: tuple) -> TargetConfig | None:
        if not isinstance(entry.node, yaml.MappingNode) and not self.r.is_null(entry):
            self.r.expected(entry, "a mapping")
            return None
        if named and "name" not in _keys(entry):
            self.r.report(entry.line, f"{entry.path}.name", "missing (every target in TARGETS needs a name)")
            return None
        try:
            target = self.read_object(TargetConfig, entry, chain)
        except Invalid:
            return None
        generators = self.where.get(chain + ("generators",))
        if generators is not None and not target.generators:
            self.r.report(generators.line, generators.path, "at least one generator is required")
        if target.prompt is not None and self.teacher_missing(target.prompt, chain + ("prompt",)):
            where = self.where.get(chain + ("prompt", "teacher_messages"), self.where.get(chain + ("prompt",)))
            self.r.report(where.line, f"{where.path.removesuffix('.teacher.messages')}.teacher.messages", NO_TEACHER)
        return target

    def drop_repeated_datasets(self, bake: BakeConfig) -> None:
        seen: dict[str, int] = {}
        kept = []
        for index, entry in enumerate(bake.datasets):
            where = self.where.get(("bake", "datasets", index, "target"))
            if entry.target in seen and where is not None:
                self.r.report(where.line, where.path,
                              f"target {entry.target!r} is listed twice (first on line {seen[entry.target]})")
                continue
            seen[entry.target] = where.line if where else 0
            kept.append(entry)
        bake.datasets = kept

    # -- generators: which keys a type reads ------------------------------------------------

    def generator(self, entry: Entry, chain: tuple) -> GeneratorConfig:
        r = self.r
        if not isinstance(entry.node, yaml.MappingNode):
            raise r.expected(entry, "a mapping with a 'type'")
        group = layout(GeneratorConfig)
        mapping = r.mapping(entry, list(group.children), group.aliases)
        self.where[chain] = entry
        values: dict[tuple, Any] = {}
        written: dict[tuple, Entry] = {}
        if "type" not in mapping:
            raise r.fail(entry, f"missing key 'type' (one of {', '.join(layout_choices('type'))})")
        self.read_slot(group.children["type"], mapping.pop("type"), values, written, chain)
        if ("type",) not in values:
            raise Invalid()
        kind = self.generator_type = values[("type",)]
        used = [key for key, slot in group.children.items() if _used_by(slot, kind)]
        for key, child in list(mapping.items()):
            if not _used_by(group.children[key], kind):
                r.report(child.line, child.path, f"not used by {kind} generators (keys: {', '.join(used)})")
                del mapping[key]
        self.read_children(group, mapping, values, written, chain)
        self.generator_requirements(kind, entry, mapping, values)
        generator = self.build(GeneratorConfig, (), values, written, chain, entry)
        for note_chain, message in generator._notices({c[0] for c in written}):
            where = self.where.get(chain + note_chain, entry)
            r.note(where.line, where.path if where is not entry else f"{entry.path}.{note_chain[0]}", message)
        return generator

    def generator_requirements(self, kind: str, entry: Entry, mapping: dict, values: dict) -> None:
        r = self.r
        if kind == "hardcoded":
            if "stims" not in mapping:
                r.report(entry.line, f"{entry.path}.stims", "missing (required by hardcoded generators)")
            elif ("stims",) in values and not values[("stims",)]:
                r.report(mapping["stims"].line, mapping["stims"].path, "must not be empty")
        elif kind == "from_dataset" and "path" not in mapping and "dataset" not in mapping:
            r.report(entry.line, f"{entry.path}.path", "missing (required by from_dataset generators, "
                                                         "or a named dataset)")


def layout_choices(name: str) -> tuple:
    return next(d for d in declared_fields(GeneratorConfig) if d.name == name).spec.choices


def _used_by(child, kind: str) -> bool:
    return not isinstance(child, Slot) or child.decl.spec.used_by is None or kind in child.decl.spec.used_by
