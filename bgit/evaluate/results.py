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
    # The same over the response tokens past TARGET.max_tokens, the length the bake trained
    # on (only when --max-tokens sampled longer responses); None when there were none.
    past_trained_length: "KlSums | None" = None

    def closure_within_trained_length(self) -> float | None:
        """The closure over the tokens up to the trained length, when some went past it."""
        past = self.past_trained_length
        if past is None or self.tokens <= past.tokens or None in (self.kl_prompted_base, past.kl_prompted_base):
            return None
        base = self.kl_prompted_base * self.tokens - past.kl_prompted_base * past.tokens
        baked = self.kl_prompted_baked * self.tokens - past.kl_prompted_baked * past.tokens
        return 1 - baked / base if base else None

    @classmethod
    def from_json(cls, data: dict):
        """Tolerant: unknown keys are ignored, missing ones take their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in (data or {}).items() if k in known}
        past = values.get("past_trained_length")
        values["past_trained_length"] = KlSums.from_json(past) if isinstance(past, dict) else None
        return cls(**values)


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
        result = super().from_json({k: v for k, v in data.items() if k != "targets"})
        result.targets = {name: KlSums.from_json(sums)
                          for name, sums in (data.get("targets") or {}).items() if isinstance(sums, dict)}
        return result

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
