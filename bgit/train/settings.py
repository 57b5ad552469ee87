"""Hyper-parameters of one bake's training run (the pipeline maps BakeConfig onto them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bgit.train.errors import TrainSettingsError

SCHEDULERS = ("constant", "linear", "cosine")
LOSSES = ("topk", "full")
AUTOCAST_MODES = ("auto", "bf16", "off")


def _help(text: str, **kwargs) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class TrainSettings:
    epochs: int = _help("Passes over the training examples.", default=2)
    micro_batch_size: int = _help("Examples per forward/backward.", default=4)
    gradient_accumulation_steps: int = _help("Micro-batches per optimizer step.", default=1)
    learning_rate: float = _help("Peak AdamW learning rate.", default=1e-4)
    weight_decay: float = _help("AdamW weight decay.", default=0.0)
    betas: tuple[float, float] = _help("AdamW betas.", default=(0.9, 0.999))
    scheduler: str = _help("constant | linear | cosine decay after the linear warm-up.", default="cosine")
    warmup_ratio: float = _help("Fraction of optimizer steps spent warming up linearly.", default=0.05)
    min_lr_ratio: float = _help("Final learning rate as a fraction of the peak.", default=0.0)
    max_grad_norm: float = _help("Gradient clipping threshold (global L2 norm).", default=1.0)
    seed: int = _help("Seed of LoRA initialisation, data order and dropout.", default=0)
    max_length: int = _help("Student context + response tokens; longer responses lose their tail.", default=1024)
    loss: str = _help("topk: cached teacher top-K + tail bucket | full: teacher recomputed, whole vocabulary.", default="topk")
    lora_r: int = _help("LoRA rank.", default=16)
    lora_alpha: float | None = _help("LoRA alpha; None = 2 * r.", default=None)
    lora_dropout: float = _help("LoRA dropout (base-model dropout is always off).", default=0.0)
    target_modules: str | list[str] = _help("'all-linear' (every linear layer but the output head) or module names.", default="all-linear")
    autocast: str = _help("auto (bf16 on CUDA GPUs with bf16, else off) | bf16 | off.", default="auto")
    deepspeed_stage: int | None = _help("ZeRO stage (0, 1, 2) to train through a DeepSpeed engine; None = plain torch.", default=None)
    eval_every_epoch: bool = _help("Measure eval KL before training and after every epoch.", default=True)
    checkpoint_every_epoch: bool = _help("Save a resumable checkpoint after every epoch.", default=True)
    log_every: int = _help("Write a metrics row every this many optimizer steps.", default=1)

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        positive = ("epochs", "micro_batch_size", "gradient_accumulation_steps", "max_length", "lora_r", "log_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise TrainSettingsError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise TrainSettingsError("learning_rate", f"must be positive, got {self.learning_rate}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise TrainSettingsError("betas", f"must be two numbers in [0, 1), got {list(self.betas)}")
        if self.scheduler not in SCHEDULERS:
            raise TrainSettingsError("scheduler", f"must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.loss not in LOSSES:
            raise TrainSettingsError("loss", f"must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.autocast not in AUTOCAST_MODES:
            raise TrainSettingsError("autocast", f"must be one of {', '.join(AUTOCAST_MODES)}, got {self.autocast!r}")
        for name in ("warmup_ratio", "min_lr_ratio", "lora_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise TrainSettingsError(name, f"must be between 0 and 1, got {getattr(self, name)}")
        if self.deepspeed_stage is not None and self.deepspeed_stage not in (0, 1, 2):
            # ZeRO-3 partitions the weights; saving the adapter would need a gather first.
            raise TrainSettingsError("deepspeed_stage", f"must be 0, 1 or 2 (ZeRO-3 is not supported), got {self.deepspeed_stage}")

    @property
    def alpha(self) -> float:
        return float(self.lora_alpha) if self.lora_alpha is not None else 2.0 * self.lora_r

    def to_dict(self) -> dict:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out
