"""The same baking loop through a DeepSpeed engine (``BAKE.deepspeed``).

Launch one process per GPU::

    deepspeed --num_gpus 8 -m bgit.cli.main bake
    torchrun --nproc_per_node 8 -m bgit.cli.main bake

On CPU the gloo backend is used (``DS_ACCELERATOR=cpu``), alone or with several processes
(``torchrun --nproc_per_node 2``). The loop normalises the loss itself (tokens of the whole
step, :mod:`bgit.train.distributed`), so ``engine.backward`` is told not to divide by the
accumulation steps again, the averaging over ranks is undone by the loss scale, and the step
boundary is set explicitly (a ragged last step has fewer micro-batches).

ZeRO-3 partitions every weight, the frozen parent's too: reading or writing the LoRA tensors
(adapter, checkpoints) happens inside :meth:`DeepSpeedStepper.gathered`, and :meth:`close`
gathers every weight back into a plain tensor and removes DeepSpeed's hooks and attributes,
so the caller's model comes back whole.
"""

from __future__ import annotations

import contextlib

from bgit.train.distributed import init_process_group, rank_world
from bgit.train.errors import DeepSpeedUnavailableError


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
        init_process_group(device.type, deepspeed=True)
        self.zero_stage = bake.deepspeed.zero_stage
        self.peft_model, self.trainable = peft_model, trainable
        # what each weight carried before DeepSpeed added its own attributes (ZeRO-3), for close()
        self._own_attributes = {id(p): set(vars(p)) for p in peft_model.parameters()}
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=peft_model,
            model_parameters=trainable,
            # bf16 weights + fp32 master copies on GPUs; on CPU the loop's autocast does bf16.
            config=engine_config(bake, bf16 and device.type == "cuda"),
            lr_scheduler=lambda opt: make_scheduler(opt, bake.scheduler, total_steps),
        )
        self.module = self.engine
        self.loss_scale = float(rank_world()[1])  # DeepSpeed averages gradients over ranks

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

    def gathered(self, modify: bool = False):
        """The LoRA tensors whole inside the block (ZeRO-3; every rank must enter). ``modify``:
        rank 0's writes are kept and shared on exit."""
        if self.zero_stage < 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(self.trainable, modifier_rank=0 if modify else None)

    def close(self) -> None:
        """Detach the engine from the model: hooks off, and under ZeRO-3 every weight whole again."""
        self.engine.destroy()
        if self.zero_stage < 3:
            return
        import deepspeed

        for param in self.peft_model.parameters():
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                whole = param.data.clone()
            param.data = whole
            for name in set(vars(param)) - self._own_attributes.get(id(param), set()):
                delattr(param, name)
