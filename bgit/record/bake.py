"""bake.yml: the record of one bake, with one writer (:meth:`BakeRecord.to_yaml`) and one
reader (:meth:`BakeRecord.from_yaml`).

A bake commit's bake.yml says what produced its adapter: the base model (name, fingerprint,
resolved revision), the parent bake for sequential baking, the resolved hyper-parameters,
seeds, the phase keys (so gc keeps the cached phases a commit names), timings, token counts,
held-out stims and final metrics, library versions and the device.

bake.yml arrives from commits and remotes, so reading is bounded (size, alias expansion) and
tolerant: a missing or mistyped field reads as its default, as older or hand-written records
may lack some; only a file that is not a YAML mapping at all is an error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields

import yaml

from bgit.errors import BgitError
from bgit.util.yaml import YamlLimitError, load_bounded

# Where a bake commit keeps its files (DESIGN §3.2).
BAKE_RECORD = "bake.yml"
INPUT_YML = "input.yml"
METRICS = "metrics.jsonl"
ADAPTER_DIR = "adapter"
ADAPTER_CONFIG = "adapter/adapter_config.json"
ADAPTER_WEIGHTS = "adapter/adapter_model.safetensors"
TARGETS_DIR = "targets"


def stim_path(target: str) -> str:
    return f"{TARGETS_DIR}/{target}/stim.jsonl"


def rollout_path(target: str) -> str:
    return f"{TARGETS_DIR}/{target}/rollout.jsonl"


BAKE_RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 20


class BakeRecordError(BgitError):
    """bake.yml that is not a bake record."""


@dataclass
class ModelRef:
    name: str | None = None
    fingerprint: str | None = None   # BLAKE3 over config + weight files
    revision: str | None = None      # the resolved commit of a hub model, when it came from a hub


@dataclass
class ParentRef:
    mode: str = "base"               # base | head
    commit: str | None = None        # the bake this one was trained on top of
    adapter_digest: str | None = None


@dataclass
class PhaseKeys:
    stim: dict[str, str] = field(default_factory=dict)      # target -> key
    rollout: dict[str, str] = field(default_factory=dict)   # target -> key
    train: str | None = None

    def all(self) -> set[str]:
        return {*self.stim.values(), *self.rollout.values(), *([self.train] if self.train else [])}


@dataclass
class BakeMetrics:
    final_train_kl: float | None = None
    final_eval_kl: float | None = None
    eval_closure: float | None = None


@dataclass
class BakeRecord:
    base_model: ModelRef = field(default_factory=ModelRef)
    parent: ParentRef = field(default_factory=ParentRef)
    targets: list[str] = field(default_factory=list)
    hyperparameters: dict = field(default_factory=dict)
    seed: int = 0
    phase_keys: PhaseKeys = field(default_factory=PhaseKeys)
    timings: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    trajectories: dict[str, int | None] = field(default_factory=dict)
    eval_stims: dict[str, list[str]] | None = None   # None: the bake named no held-out stims
    train_resumed_from_epoch: int = 0
    metrics: BakeMetrics = field(default_factory=BakeMetrics)
    versions: dict[str, str] = field(default_factory=dict)
    device: str | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    student_model: ModelRef | None = None           # distill baking: a different student model
    # a merge bake: {strategy: train | weights, ours, theirs, base, and for weights the
    # combination, weights, density and seed}; None for an ordinary bake
    merge: dict | None = None

    @property
    def final_kl(self) -> float | None:
        """The eval KL when there was eval data, else the train KL."""
        m = self.metrics
        return m.final_eval_kl if m.final_eval_kl is not None else m.final_train_kl

    def to_dict(self) -> dict:
        out = {"bgit_bake": BAKE_RECORD_VERSION, **asdict(self)}
        for optional in ("student_model", "merge"):
            if out[optional] is None:
                out.pop(optional)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str | bytes, what: str = "bake.yml") -> "BakeRecord":
        """Parse bake.yml (bounded); BakeRecordError when it is not a mapping."""
        try:
            data = load_bounded(text, what, max_bytes=MAX_RECORD_BYTES)
        except YamlLimitError as error:
            raise BakeRecordError(str(error)) from None
        if not isinstance(data, dict):
            raise BakeRecordError(f"{what}: not a bake record (expected a YAML mapping)")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> "BakeRecord":
        record = cls()
        for f in fields(cls):
            if f.name in data:
                setattr(record, f.name, _read_field(f.name, data[f.name], getattr(record, f.name)))
        return record


_NESTED = {"base_model": ModelRef, "parent": ParentRef, "phase_keys": PhaseKeys, "metrics": BakeMetrics,
           "student_model": ModelRef}


def _read_field(name: str, value, default):
    """A field's value if its shape is plausible, else the default (tolerant reading)."""
    if name in _NESTED:
        kind = _NESTED[name]
        if name == "base_model" and isinstance(value, str):   # a hand-written record: just the name
            return ModelRef(name=value)
        if not isinstance(value, dict):
            return default
        return kind(**{f.name: _scalar_or_mapping(value.get(f.name), getattr(kind(), f.name))
                       for f in fields(kind)})
    if name == "targets":
        if isinstance(value, dict):
            value = list(value)
        return [str(t.get("name") if isinstance(t, dict) else t) for t in value or [] if t is not None] \
            if isinstance(value, list) else default
    if name == "merge":
        return value if isinstance(value, dict) else None
    if name == "eval_stims":
        if not isinstance(value, dict):
            return None
        return {str(k): [str(s) for s in v] for k, v in value.items() if isinstance(v, list)}
    if isinstance(default, dict):
        return value if isinstance(value, dict) else default
    if isinstance(default, list):
        return [str(v) for v in value] if isinstance(value, list) else default
    if isinstance(default, int) and not isinstance(default, bool):
        return value if isinstance(value, int) and not isinstance(value, bool) else default
    return value if value is None or isinstance(value, (str, int, float)) else default


def _scalar_or_mapping(value, default):
    if isinstance(default, dict):
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else default
    if isinstance(value, bool):
        return default
    if isinstance(value, (int, float)) and not isinstance(default, str):
        return float(value)
    return value if isinstance(value, (str, type(None))) else default
