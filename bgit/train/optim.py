"""The optimizer and learning-rate schedule of a bake (BAKE.optimizer, BAKE.scheduler).

Names and ranges are declared in :mod:`bgit.config.schema`; this module only builds the
torch objects. bgit's own schedules (constant, linear, cosine) warm up linearly over
``warmup_ratio`` of the steps and then stay flat / decay linearly / decay along a cosine to
``min_lr_ratio`` of the peak. The others come from ``transformers.get_scheduler`` with the
same number of warm-up steps; ``huggingface`` is transformers' default schedule, 'linear'
(the default of ``TrainingArguments.lr_scheduler_type``).
"""

from __future__ import annotations

import math

from bgit.config.schema import OWN_SCHEDULERS, OptimizerConfig, SchedulerConfig
from bgit.train.errors import TrainError


def make_optimizer(params, config: OptimizerConfig):
    import torch

    kind, lr, decay = config.type, config.learning_rate, config.weight_decay
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(config.betas), weight_decay=decay)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(config.betas), weight_decay=decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=decay)
    if not hasattr(torch.optim, "Adafactor"):
        raise TrainError(f"BAKE.optimizer.type: adafactor needs torch >= 2.5 (this is {torch.__version__})")
    return torch.optim.Adafactor(params, lr=lr, weight_decay=decay)


def warmup_steps(config: SchedulerConfig, total_steps: int) -> int:
    return int(round(config.warmup_ratio * total_steps))


def lr_lambda(config: SchedulerConfig, total_steps: int):
    """The factor of bgit's own schedules at each optimizer step."""
    warmup = warmup_steps(config, total_steps)
    floor = config.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.type == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if config.type == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_scheduler(optimizer, config: SchedulerConfig, total_steps: int):
    """A LambdaLR-like scheduler stepped once per optimizer step (its state is JSON for checkpoints)."""
    import torch

    if config.type in OWN_SCHEDULERS:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, total_steps))
    from transformers import get_scheduler

    name = "linear" if config.type == "huggingface" else config.type
    extra = {"min_lr_rate": config.min_lr_ratio} if name == "cosine_with_min_lr" else None
    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps(config, total_steps),
                         num_training_steps=total_steps, scheduler_specific_kwargs=extra)
