"""input.yml -> :class:`InputConfig`, with ``FILE:LINE: KEY: message`` errors.

Defaults come from :mod:`bgit.config.schema`. The loader also resolves the
defaults that depend on other values, so the config saved with a bake and its
phase keys are explicit: ``lora_alpha`` (2*r), ``BAKE.datasets`` (every target,
weight 1), a generator's ``seed`` (BAKE.seed) and ``model`` (MODEL.base), and a
hardcoded generator's ``numq`` (its number of stims). Paths stay as written; see
:func:`resolve_path`.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import yaml

from bgit.config.errors import ConfigError, ConfigIssue
from bgit.config.nodes import Entry, Invalid, Reader, line_of, suggestion
from bgit.config.schema import (
    BakeConfig,
    DataConfig,
    DatasetWeight,
    DeepSpeedConfig,
    GeneratorConfig,
    InputConfig,
    LoraConfig,
    ModelConfig,
    OptimizerConfig,
    PromptConfig,
    SchedulerConfig,
    TargetConfig,
)

SECTIONS = ["MODEL", "PROMPT", "TARGET", "TARGETS", "BAKE"]
DTYPES = ["auto", "float32", "bfloat16", "float16"]
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ROLES = ["system", "user", "assistant", "tool"]
GENERATOR_TYPES = ["hardcoded", "from_dataset", "oneshot_qs", "persona"]
SCHEDULERS = ["constant", "linear", "cosine"]
AUTOCASTS = ("auto", "bf16", "off")
LOSSES = ["topk", "full"]
PARENTS = ["base", "head"]
TEMPLATE_VARIABLES = {"oneshot_qs": ["numq", "prompt_u"], "persona": ["numq", "prompt_u", "persona"]}
NO_TEACHER = "at least one teacher message is required (the prompt to bake in)"
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")

_GENERATOR_KEYS = {
    "hardcoded": ["type", "stims"],
    "from_dataset": ["type", "path", "field", "numq", "seed"],
    "oneshot_qs": ["type", "numq", "template", "model", "temperature", "max_tokens", "seed"],
    "persona": ["type", "personas", "numq", "template", "model", "temperature", "max_tokens", "seed"],
}
# Older prompt-baking configs call hardcoded stims "questions".
_GENERATOR_ALIASES = {"questions": "stims"}


def load_config(path: str | Path) -> InputConfig:
    """Read and check an input.yml; raises :class:`ConfigError` naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(str(path), None, None, "file not found")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigIssue(str(path), None, None, "is a directory, not a file")]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([ConfigIssue(str(path), None, None, f"not UTF-8 text ({error.reason})")]) from None
    return parse_config(text, str(path), check_files=True)


def parse_config(text: str, filename: str = "input.yml", check_files: bool = False) -> InputConfig:
    """Check the YAML ``text`` of ``filename``. ``check_files``: also check that dataset files exist
    (relative paths are taken from the directory of ``filename``)."""
    reader = Reader(filename)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([ConfigIssue(filename, line, "yaml", error.problem or str(error))]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigIssue(filename, 1, "yaml", str(error).splitlines()[0])]) from None
    config = _Loader(reader, Path(filename).parent if check_files else None).config(root)
    if reader.issues:
        raise ConfigError(sorted(reader.issues, key=lambda issue: issue.line or 0))
    config.source = filename
    return config


def resolve_path(cfg: InputConfig, path: str | Path) -> Path:
    """A path from the config, relative paths taken from the config file's directory."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    return Path(cfg.source).resolve().parent / path


class _Loader:
    def __init__(self, reader: Reader, base_dir: Path | None):
        self.r = reader
        self.base_dir = base_dir
        self.prompt_where: Entry | None = None

    # -- top level ------------------------------------------------------------

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
        model = self.model(sections.get("MODEL"))
        prompt_entry = sections.get("PROMPT")
        prompt = PromptConfig()
        if prompt_entry is not None:
            prompt, self.prompt_where = self.prompt(prompt_entry)
        targets = self.targets(sections, prompt_entry, prompt)
        bake = self.bake(sections.get("BAKE"), targets)
        self.resolve_generators(targets, model, bake)
        return InputConfig(model=model, prompt=prompt, targets=targets, bake=bake)

    def model(self, entry: Entry | None) -> ModelConfig:
        d = ModelConfig()
        if entry is None:
            return d
        m = self._mapping(entry, ["base", "dtype", "trust_remote_code"])
        return ModelConfig(
            base=self.r.get(m, "base", self.r.string, d.base),
            dtype=self.r.get(m, "dtype", self.r.choice, d.dtype, choices=DTYPES, aliases=DTYPE_ALIASES),
            trust_remote_code=self.r.get(m, "trust_remote_code", self.r.boolean, d.trust_remote_code),
        )

    # -- prompts --------------------------------------------------------------

    def prompt(self, entry: Entry, fallback: PromptConfig | None = None) -> tuple[PromptConfig, Entry | None]:
        """A PROMPT mapping and where its teacher messages are (None: they were invalid,
        nothing more to say); parts a target override leaves out come from ``fallback``."""
        m = self._mapping(entry, ["teacher", "student"])
        teacher = self._mapping(m["teacher"], ["messages", "tools"]) if "teacher" in m else {}
        student = self._mapping(m["student"], ["messages"]) if "student" in m else {}
        fallback = fallback or PromptConfig()
        result = PromptConfig(
            teacher_messages=self.r.get(teacher, "messages", self.messages, None),
            teacher_tools=self.r.get(teacher, "tools", self.tools, None),
            student_messages=self.r.get(student, "messages", self.messages, []),
        )
        if "messages" not in teacher:
            result.teacher_messages = fallback.teacher_messages
        if "tools" not in teacher:
            result.teacher_tools = fallback.teacher_tools
        if "messages" not in student:
            result.student_messages = fallback.student_messages
        if result.teacher_messages is None:  # invalid messages, already reported
            result.teacher_messages = []
            return result, None
        where = teacher.get("messages") or m.get("teacher") or entry
        return result, Entry(where.node, f"{entry.path}.teacher.messages", where.line)

    def messages(self, entry: Entry) -> list[dict]:
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
        m = self._mapping(entry, ["role", "content", "name", "tool_calls", "tool_call_id"])
        if "role" not in m:
            raise r.fail(entry, "missing key 'role' (one of system, user, assistant, tool)")
        message = {"role": r.choice(m["role"], ROLES)}
        if "content" in m:
            message["content"] = r.string(m["content"], allow_empty=True)
        elif "tool_calls" not in m:
            raise r.fail(entry, "missing key 'content'")
        for key in ("name", "tool_call_id"):
            if key in m:
                message[key] = r.string(m[key])
        if "tool_calls" in m:
            message["tool_calls"] = self._list_of_mappings(m["tool_calls"])
        return message

    def tools(self, entry: Entry) -> list[dict] | None:
        if self.r.is_null(entry):
            return None
        return self._list_of_mappings(entry)

    def _list_of_mappings(self, entry: Entry) -> list[dict]:
        result = []
        for item in self.r.sequence(entry):
            value = self.r.data(item)
            if not isinstance(value, dict):
                raise self.r.expected(item, "a mapping")
            result.append(value)
        return result

    # -- targets --------------------------------------------------------------

    def targets(self, sections: dict[str, Entry], prompt_entry: Entry | None,
                prompt: PromptConfig) -> list[TargetConfig]:
        r = self.r
        single, several = sections.get("TARGET"), sections.get("TARGETS")
        if single and several:
            r.report(several.line, "TARGETS", f"use either TARGET or TARGETS, not both (TARGET is on line {single.line})")
            return []
        if single is None and several is None:
            r.report(1, "TARGET", "missing section (or TARGETS, a list of targets)")
            return []
        entries = [single] if single else self._items(several, nonempty=True)
        targets: list[TargetConfig] = []
        name_lines: dict[str, int] = {}
        for entry in entries:
            parsed = self.target(entry, named=several is not None, prompt=prompt)
            if parsed is None:
                continue
            target, name_entry, own_teacher = parsed
            if target.name in name_lines:
                r.report(name_entry.line, name_entry.path,
                         f"duplicate target name {target.name!r} (first on line {name_lines[target.name]})")
                continue
            name_lines[target.name] = name_entry.line
            targets.append(target)
            if own_teacher is not None and not target.prompt.teacher_messages:
                r.report(own_teacher.line, own_teacher.path, NO_TEACHER)
        if any(t.prompt is None for t in targets):
            if prompt_entry is None:
                r.report(1, "PROMPT", "missing section (the teacher prompt to bake in)")
            elif not prompt.teacher_messages and self.prompt_where is not None:
                r.report(self.prompt_where.line, self.prompt_where.path, NO_TEACHER)
        return targets

    def target(self, entry: Entry, named: bool, prompt: PromptConfig):
        """(target, entry of its name, where its own teacher messages are) or None."""
        r, d = self.r, TargetConfig()
        keys = ["name", "generators", "max_tokens", "temperature", "num_traj_per_stimulus", "top_k", "prompt"]
        try:
            m = r.mapping(entry, keys)
        except Invalid:
            return None
        name_entry = m.get("name") or Entry(entry.node, f"{entry.path}.name", entry.line)
        if "name" in m:
            name = r.get(m, "name", self.target_name, d.name)
        elif named:
            r.report(entry.line, f"{entry.path}.name", "missing (every target in TARGETS needs a name)")
            return None
        else:
            name = d.name
        own_prompt, own_teacher = self.prompt(m["prompt"], fallback=prompt) if "prompt" in m else (None, None)
        if "generators" in m:
            generators = r.get(m, "generators", self.generators, [])
        else:
            generators = []
            r.report(entry.line, f"{entry.path}.generators", "missing (at least one generator is required)")
        target = TargetConfig(
            name=name,
            generators=generators,
            max_tokens=r.get(m, "max_tokens", r.integer, d.max_tokens, minimum=1),
            temperature=r.get(m, "temperature", r.number, d.temperature, low=0.0),
            num_traj_per_stimulus=r.get(m, "num_traj_per_stimulus", r.integer, d.num_traj_per_stimulus, minimum=1),
            top_k=r.get(m, "top_k", r.integer, d.top_k, minimum=1),
            prompt=own_prompt,
        )
        return target, name_entry, own_teacher

    def target_name(self, entry: Entry) -> str:
        name = self.r.string(entry)
        if not TARGET_NAME.match(name):
            raise self.r.fail(entry, f"invalid target name {name!r} (use letters, digits, '.', '_' and '-')")
        return name

    def generators(self, entry: Entry) -> list[GeneratorConfig]:
        items = self.r.sequence(entry)
        if not items:
            raise self.r.fail(entry, "at least one generator is required")
        result = []
        for item in items:
            try:
                result.append(self.generator(item))
            except Invalid:
                pass
        return result

    def generator(self, entry: Entry) -> GeneratorConfig:
        r, d = self.r, GeneratorConfig()
        if not isinstance(entry.node, yaml.MappingNode):
            raise r.expected(entry, "a mapping with a 'type'")
        all_keys = sorted({key for keys in _GENERATOR_KEYS.values() for key in keys})
        probe = r.mapping(Entry(entry.node, entry.path, entry.line), all_keys + list(_GENERATOR_ALIASES))
        if "type" not in probe:
            raise r.fail(entry, f"missing key 'type' (one of {', '.join(GENERATOR_TYPES)})")
        kind = r.choice(probe["type"], GENERATOR_TYPES)
        allowed = _GENERATOR_KEYS[kind]
        for key, child in probe.items():
            if key not in allowed and key not in _GENERATOR_ALIASES:
                r.report(child.line, child.path, f"not used by {kind} generators (keys: {', '.join(allowed)})")
        m = {_GENERATOR_ALIASES.get(key, key): child for key, child in probe.items()}
        generator = GeneratorConfig(
            type=kind,
            numq=r.get(m, "numq", r.integer, d.numq, minimum=0 if kind == "from_dataset" else 1),
            seed=r.get(m, "seed", r.integer, None, minimum=0, optional=True),
            model=r.get(m, "model", r.string, None, optional=True),
            temperature=r.get(m, "temperature", r.number, d.temperature, low=0.0),
            max_tokens=r.get(m, "max_tokens", r.integer, d.max_tokens, minimum=1),
        )
        if kind == "hardcoded":
            generator.stims = self._required(m, entry, "stims", kind, r.string_list, [], nonempty=True)
            generator.numq = len(generator.stims)
        elif kind == "from_dataset":
            generator.path = self._required(m, entry, "path", kind, self.dataset_path, None)
            generator.field = r.get(m, "field", r.string, None, optional=True)
        else:
            if kind == "persona":
                generator.personas = self._required(m, entry, "personas", kind, r.string_list, [], nonempty=True)
            generator.template = r.get(m, "template", self.template, None, kind=kind)
        return generator

    def _required(self, m: dict[str, Entry], entry: Entry, key: str, kind: str, read, default, **kwargs):
        if key not in m:
            self.r.report(entry.line, f"{entry.path}.{key}", f"missing (required by {kind} generators)")
            return default
        return self.r.get(m, key, read, default, **kwargs)

    def template(self, entry: Entry, kind: str) -> str | None:
        text = self.r.string(entry, optional=True)
        if text is None:
            return None
        needed = TEMPLATE_VARIABLES[kind]
        found = set()
        for match in string.Template.pattern.finditer(text):
            if match.group("invalid") is not None:
                raise self.r.fail(entry, "invalid '$' placeholder (write $$ for a literal $)")
            name = match.group("named") or match.group("braced")
            if name is not None and name not in needed:
                hint = suggestion(name, needed)
                raise self.r.fail(entry, f"unknown placeholder ${{{name}}}{hint} (allowed: "
                                         + ", ".join(f"${{{n}}}" for n in needed) + ")")
            if name:
                found.add(name)
        missing = [f"${{{n}}}" for n in needed if n not in found]
        if missing:
            raise self.r.fail(entry, f"template is missing {', '.join(missing)}")
        return text

    def dataset_path(self, entry: Entry) -> str:
        path = self.r.string(entry)
        if self.base_dir is not None:
            full = Path(path).expanduser()
            full = full if full.is_absolute() else self.base_dir / full
            if not full.exists():
                raise self.r.fail(entry, f"file not found: {path}")
        return path

    # -- bake -----------------------------------------------------------------

    def bake(self, entry: Entry | None, targets: list[TargetConfig]) -> BakeConfig:
        r, d = self.r, BakeConfig()
        keys = ["name", "datasets", "epochs", "micro_batch_size", "gradient_accumulation_steps",
                "total_trajectories", "seed", "parent", "loss", "autocast", "model", "optimizer",
                "scheduler", "deepspeed", "data"]
        m = self._mapping(entry, keys) if entry else {}
        bake = BakeConfig(
            name=r.get(m, "name", r.string, d.name),
            datasets=r.get(m, "datasets", self.datasets, [], targets=targets),
            epochs=r.get(m, "epochs", r.integer, d.epochs, minimum=1),
            micro_batch_size=r.get(m, "micro_batch_size", r.integer, d.micro_batch_size, minimum=1),
            gradient_accumulation_steps=r.get(m, "gradient_accumulation_steps", r.integer,
                                              d.gradient_accumulation_steps, minimum=1),
            total_trajectories=r.get(m, "total_trajectories", r.integer, None, minimum=1, optional=True),
            seed=r.get(m, "seed", r.integer, d.seed, minimum=0),
            parent=r.get(m, "parent", r.choice, d.parent, choices=PARENTS),
            loss=r.get(m, "loss", r.choice, d.loss, choices=LOSSES),
            autocast=r.get(m, "autocast", r.choice, d.autocast, choices=AUTOCASTS),
            lora=r.get(m, "model", self.lora, LoraConfig()),
            optimizer=r.get(m, "optimizer", self.optimizer, OptimizerConfig()),
            scheduler=r.get(m, "scheduler", self.scheduler, SchedulerConfig()),
            data=r.get(m, "data", self.data, DataConfig()),
            deepspeed=r.get(m, "deepspeed", self.deepspeed, DeepSpeedConfig()),
        )
        if not bake.datasets:
            bake.datasets = [DatasetWeight(target=t.name, weight=1.0) for t in targets]
        if bake.lora.lora_alpha is None:
            bake.lora.lora_alpha = float(2 * bake.lora.r)
        return bake

    def datasets(self, entry: Entry, targets: list[TargetConfig]) -> list[DatasetWeight]:
        r = self.r
        names = [t.name for t in targets]
        result: list[DatasetWeight] = []
        seen: dict[str, int] = {}
        for item in r.sequence(entry):
            try:
                m = r.mapping(item, ["target", "weight"])
            except Invalid:
                continue
            if "target" not in m:
                r.report(item.line, f"{item.path}.target", "missing (the name of a target)")
                continue
            name = r.get(m, "target", r.string, None)
            if name is None:
                continue
            weight = r.get(m, "weight", r.number, 1.0, low=0.0, low_open=True)
            target_entry = m["target"]
            if names and name not in names:
                r.report(target_entry.line, target_entry.path,
                         f"unknown target {name!r} (targets: {', '.join(names)}){suggestion(name, names)}")
            elif name in seen:
                r.report(target_entry.line, target_entry.path, f"target {name!r} is listed twice (first on line {seen[name]})")
            else:
                seen[name] = target_entry.line
                result.append(DatasetWeight(target=name, weight=weight))
        return result

    def lora(self, entry: Entry) -> LoraConfig:
        r, d = self.r, LoraConfig()
        model = self._mapping(entry, ["baked_adapter_config"])
        if "baked_adapter_config" not in model:
            return d
        m = self._mapping(model["baked_adapter_config"], ["r", "lora_alpha", "lora_dropout", "target_modules"])
        return LoraConfig(
            r=r.get(m, "r", r.integer, d.r, minimum=1),
            lora_alpha=r.get(m, "lora_alpha", r.number, None, low=0.0, low_open=True, optional=True),
            lora_dropout=r.get(m, "lora_dropout", r.number, d.lora_dropout, low=0.0, high=1.0, high_open=True),
            target_modules=r.get(m, "target_modules", self.target_modules, d.target_modules),
        )

    def target_modules(self, entry: Entry) -> str | list[str]:
        if isinstance(entry.node, yaml.SequenceNode):
            return self.r.string_list(entry, nonempty=True)
        return self.r.string(entry)

    def optimizer(self, entry: Entry) -> OptimizerConfig:
        r, d = self.r, OptimizerConfig()
        m = self._mapping(entry, ["learning_rate", "weight_decay", "betas"])
        return OptimizerConfig(
            learning_rate=r.get(m, "learning_rate", r.number, d.learning_rate, low=0.0, low_open=True),
            weight_decay=r.get(m, "weight_decay", r.number, d.weight_decay, low=0.0),
            betas=r.get(m, "betas", self.betas, d.betas),
        )

    def betas(self, entry: Entry) -> list[float]:
        items = self.r.sequence(entry)
        if len(items) != 2:
            raise self.r.fail(entry, f"expected two numbers [beta1, beta2], got {len(items)} value{'s' if len(items) != 1 else ''}")
        return [self.r.number(item, low=0.0, high=1.0, high_open=True) for item in items]

    def scheduler(self, entry: Entry) -> SchedulerConfig:
        r, d = self.r, SchedulerConfig()
        if isinstance(entry.node, yaml.ScalarNode) and not r.is_null(entry):
            return SchedulerConfig(type=r.choice(entry, SCHEDULERS))
        m = self._mapping(entry, ["type", "warmup_ratio", "min_lr_ratio"])
        return SchedulerConfig(
            type=r.get(m, "type", r.choice, d.type, choices=SCHEDULERS),
            warmup_ratio=r.get(m, "warmup_ratio", r.number, d.warmup_ratio, low=0.0, high=1.0, high_open=True),
            min_lr_ratio=r.get(m, "min_lr_ratio", r.number, d.min_lr_ratio, low=0.0, high=1.0),
        )

    def data(self, entry: Entry) -> DataConfig:
        r, d = self.r, DataConfig()
        m = self._mapping(entry, ["max_length", "train_eval_split"])
        return DataConfig(
            max_length=r.get(m, "max_length", r.integer, d.max_length, minimum=1),
            train_eval_split=r.get(m, "train_eval_split", r.number, d.train_eval_split, low=0.0, high=1.0,
                                   low_open=True),
        )

    def deepspeed(self, entry: Entry) -> DeepSpeedConfig:
        if self.r.is_null(entry):
            return DeepSpeedConfig()
        m = self._mapping(entry, ["zero_optimization"])
        zero = self._mapping(m["zero_optimization"], ["stage"]) if "zero_optimization" in m else {}
        stage = self.r.get(zero, "stage", self.r.integer, 0, minimum=0)
        if stage > 3:
            self.r.report(zero["stage"].line, zero["stage"].path, f"must be 0, 1, 2 or 3, got {stage}")
        return DeepSpeedConfig(enabled=True, zero_stage=min(stage, 3))

    # -- cross-section defaults -------------------------------------------------

    def resolve_generators(self, targets: list[TargetConfig], model: ModelConfig, bake: BakeConfig) -> None:
        for target in targets:
            for generator in target.generators:
                if generator.type == "hardcoded":
                    continue
                if generator.seed is None:
                    generator.seed = bake.seed
                if generator.type in TEMPLATE_VARIABLES and generator.model is None:
                    generator.model = model.base

    # -- helpers --------------------------------------------------------------

    def _mapping(self, entry: Entry, allowed: list[str]) -> dict[str, Entry]:
        """A mapping, or {} after reporting when the value is not one."""
        try:
            return self.r.mapping(entry, allowed)
        except Invalid:
            return {}

    def _items(self, entry: Entry, nonempty: bool) -> list[Entry]:
        try:
            items = self.r.sequence(entry)
        except Invalid:
            return []
        if nonempty and not items:
            self.r.report(entry.line, entry.path, "at least one target is required")
        return items
