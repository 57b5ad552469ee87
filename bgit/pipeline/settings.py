"""input.yml's BAKE section -> the trainer's settings."""

from __future__ import annotations

from bgit.config.schema import BakeConfig


def train_settings(bake: BakeConfig, device: str = "cpu"):
    from bgit.train import TrainSettings

    lora = bake.lora
    return TrainSettings(
        epochs=bake.epochs,
        micro_batch_size=bake.micro_batch_size,
        gradient_accumulation_steps=bake.gradient_accumulation_steps,
        learning_rate=bake.optimizer.learning_rate,
        weight_decay=bake.optimizer.weight_decay,
        betas=tuple(bake.optimizer.betas),
        scheduler=bake.scheduler.type,
        warmup_ratio=bake.scheduler.warmup_ratio,
        min_lr_ratio=bake.scheduler.min_lr_ratio,
        seed=bake.seed,
        max_length=bake.data.max_length,
        loss=bake.loss,
        autocast=bake.autocast,
        lora_r=lora.r,
        lora_alpha=lora.lora_alpha if lora.lora_alpha is not None else 2 * lora.r,
        lora_dropout=lora.lora_dropout,
        target_modules=lora.target_modules,
        deepspeed_stage=bake.deepspeed.zero_stage if bake.deepspeed.enabled else None,
    )
