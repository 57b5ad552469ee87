"""The same baking loop through a DeepSpeed engine (``BAKE.deepspeed``).

Launch one process per GPU::

    deepspeed --num_gpus 8 -m bgit.cli.main bake
    torchrun --nproc_per_node 8 -m bgit.cli.main bake

On a CPU-only machine a single process works with the gloo backend (``DS_ACCELERATOR=cpu``);
the environment variables MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE/LOCAL_RANK default to a
one-process group. The loop normalises the loss itself (tokens of the whole step), so
``engine.backward`` is told not to divide by the accumulation steps again, and the step
boundary is set explicitly (a ragged last step has fewer micro-batches).
"""

from __future__ import annotations

import os
import socket

from bgit.train.errors import DeepSpeedUnavailableError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(device_type: str) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    import deepspeed

    for key, default in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        os.environ.setdefault(key, default)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    deepspeed.init_distributed(dist_backend="nccl" if device_type == "cuda" else "gloo")


def engine_config(bake, bf16: bool) -> dict:
    """DeepSpeed's config from a BakeConfig (the optimizer types it takes: adamw, adam)."""
    optimizer = bake.optimizer
    return {
        "train_micro_batch_size_per_gpu": bake.micro_batch_size,
        "gradient_accumulation_steps": bake.gradient_accumulation_steps,
        "gradient_clipping": optimizer.max_grad_norm,
        "zero_optimization": {"stage": bake.deepspeed.zero_stage},
        "optimizer": {
            "type": "AdamW" if optimizer.type == "adamw" else "Adam",
            "params": {
                "lr": optimizer.learning_rate,
                "betas": list(optimizer.betas),
                "weight_decay": optimizer.weight_decay,
                "eps": 1e-8,
                "torch_adam": True,
                "adam_w_mode": optimizer.type == "adamw",
            },
        },
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


class DeepSpeedStepper:
    def __init__(self, peft_model, trainable, bake, total_steps: int, bf16: bool):
        try:
            import deepspeed
        except ImportError as exc:
            raise DeepSpeedUnavailableError(f"{exc} (pip install 'bgit[deepspeed]')") from exc
        from bgit.train.optim import make_scheduler

        device = next(peft_model.parameters()).device
        init_distributed(device.type)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=peft_model,
            model_parameters=trainable,
            # bf16 weights + fp32 master copies on GPUs; on CPU the loop's autocast does bf16.
            config=engine_config(bake, bf16 and device.type == "cuda"),
            lr_scheduler=lambda opt: make_scheduler(opt, bake.scheduler, total_steps),
        )
        self.module = self.engine

    def backward(self, loss, boundary: bool) -> None:
        self.engine.set_gradient_accumulation_boundary(boundary)
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> None:
        self.engine.step()  # optimizer + scheduler step at the boundary set in backward()

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def checkpoint_parts(self) -> dict:
        return {"engine": self.engine}
