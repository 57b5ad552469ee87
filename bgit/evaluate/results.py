"""Typed results of the evaluate layer; ``to_json()`` gives what ``--json`` prints and what
the eval git note stores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from bgit.evaluate.weights import WeightsDiff


@dataclass
class KlSums:
    """KL per response token, averaged over the evaluated tokens (see bgit.evaluate.closure)."""

    kl_prompted_base: float | None = None
    kl_prompted_baked: float | None = None
    closure: float | None = None
    kl_prompted_reprompted: float | None = None
    tokens: int = 0
    stims: int = 0


@dataclass
class EvalResult(KlSums):
    commit: str | None = None
    base_model: str | None = None
    source: str = "eval_stims"     # eval_stims | all_stims | file
    teacher: str = "base"          # base | parent <commit> | model <name> (distill): the model the prompt is applied to
    notes: list[str] = field(default_factory=list)
    targets: dict[str, KlSums] = field(default_factory=dict)
    seed: int = 0
    seconds: float = 0.0
    created: str | None = None
    bgit: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EvalResult":
        """Tolerant: unknown keys are ignored, missing ones take their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        target_keys = {f.name for f in fields(KlSums)}
        values["targets"] = {name: KlSums(**{k: v for k, v in (sums or {}).items() if k in target_keys})
                             for name, sums in (data.get("targets") or {}).items() if isinstance(sums, dict)}
        return cls(**values)

    def summary(self) -> str:
        """One line for ``bgit log``: 'eval: closure 0.83 (KL 0.41 -> 0.07, 8 stims)'."""
        def fmt(value):
            return "-" if value is None else f"{value:.3g}"
        return (f"eval: closure {fmt(self.closure)} (KL {fmt(self.kl_prompted_base)} -> "
                f"{fmt(self.kl_prompted_baked)}, {self.stims} stims)")


@dataclass
class BehaviourResult:
    kl_a_b: float | None
    tokens: int
    stims: int
    source: str
    notes: list[str] = field(default_factory=list)


@dataclass
class ConfigChange:
    key: str
    old: object
    new: object
    change: str   # added | removed | modified


@dataclass
class DatasetChange:
    target: str
    stims_a: int = 0
    stims_b: int = 0
    stims_added: list[dict] = field(default_factory=list)    # {id, text}
    stims_removed: list[dict] = field(default_factory=list)
    rollout_rows: dict = field(default_factory=dict)         # {a, b}
    rollout_tokens: dict = field(default_factory=dict)       # {a, b}
    rollout_changed: bool = False


@dataclass
class RefPoint:
    ref: str | None
    commit: str | None


@dataclass
class DiffResult:
    a: RefPoint
    b: RefPoint
    config: list[ConfigChange]
    datasets: list[DatasetChange]
    metrics: dict[str, dict]        # key -> {a, b}
    weights: WeightsDiff
    behaviour: BehaviourResult | None = None
    plot: str | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        if self.behaviour is None:
            out.pop("behaviour")
        if self.plot is None:
            out.pop("plot")
        return out
