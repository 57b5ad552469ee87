"""The baking loop: student forward/backward on cached teacher top-K, an optimizer on the LoRA.

The settings are the bake's own :class:`~bgit.config.schema.BakeConfig` (declared once in
bgit.config; the trainer keeps no defaults or ranges of its own). One flat loop (nanoGPT
style): prepare data -> LoRA + optimizer -> resume -> per step: forward/backward, update,
logging, eval and checkpoint when due -> per epoch: eval, checkpoint -> save the adapter. The
parent model is handed back unchanged: the LoRA layers are removed at the end, the trained
adapter lives in ``work_dir/adapter`` (load it with ``PeftModel.from_pretrained``).

Several processes (``torchrun --nproc_per_node N -m bgit.cli.main bake``, plain torch or
``BAKE.deepspeed``): each rank takes its share of every optimizer step's examples, and the
result equals one process's with the same global batch; the split is defined in
:mod:`bgit.train.distributed`. Rank 0 alone writes metrics, checkpoints and the adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bgit.config.declare import declared_fields
from bgit.config.hashing import config_to_dict
from bgit.config.schema import BakeConfig, CheckpointConfig
from bgit.train.checkpoint import load_latest, restore, save_checkpoint
from bgit.train.data import (collate, epoch_groups, examples_fingerprint, micro_batches, prepare_examples,
                             teacher_prefix, token_chunks, vocab_size)
from bgit.train.distributed import (broadcast_parameters, init_process_group, lost_rank, padded_share,
                                    rank_world, split_count, sum_gradients, sum_over_ranks)
from bgit.train.errors import EmptyTrainingSetError
from bgit.train.lora import (FrozenBf16Weights, attach_lora, detach_lora, lora_dropout, save_adapter,
                             training_setup)
from bgit.train.loss import batch_kl, batch_objective
from bgit.train.optim import make_optimizer, make_scheduler

METRICS = "metrics.jsonl"


@dataclass
class TrainResult:
    adapter_dir: Path
    metrics: list[dict]
    final_train_kl: float  # token-weighted mean train KL over the last epoch
    final_eval_kl: float | None  # eval KL after the last epoch (None without eval data)
    tokens: int  # response tokens trained on, all epochs
    seconds: float
    resumed_from: str | None = None
    autocast: bool = False
    settings: dict = field(default_factory=dict)


@dataclass
class Runtime:
    """Where and how this process trains: decided from the model and the launcher, not configured."""

    device: object
    autocast: bool
    rank: int = 0
    world: int = 1

    @classmethod
    def of(cls, model, bake: BakeConfig) -> "Runtime":
        """Joins the launcher's process group first (DeepSpeed needs one even alone)."""
        device = next(model.parameters()).device
        init_process_group(device.type, deepspeed=bake.deepspeed.enabled)
        rank, world = rank_world()
        return cls(device, use_autocast(bake.autocast, device), rank, world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class CheckpointPolicy:
    """BAKE.checkpoint entries combined: save when any enabled entry asks."""

    every_steps: list[int]
    every_epochs: list[int]
    resume: bool

    @classmethod
    def of(cls, entries: list[CheckpointConfig]) -> "CheckpointPolicy":
        enabled = [e for e in entries if e.enabled]
        return cls([e.save_every_n_steps for e in enabled if e.save_every_n_steps],
                   [e.save_every_n_epochs for e in enabled if e.save_every_n_epochs],
                   all(e.auto_resume for e in enabled))

    def at_step(self, step: int) -> bool:
        return any(step % n == 0 for n in self.every_steps)

    def at_epoch(self, epoch: int) -> bool:
        return any(epoch % n == 0 for n in self.every_epochs)


@dataclass
class LoopState:
    """What a checkpoint must restore besides weights and optimizer: resuming mid-epoch
    reproduces the uninterrupted run's rows exactly."""

    step: int = 0
    epoch: int = 0  # epochs complete
    tokens: int = 0
    epoch_kl: float = 0.0  # token-weighted sums over the current epoch so far
    epoch_loss: float = 0.0
    epoch_tokens: int = 0


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16): there bf16 matmuls run
    faster than float32 ones; elsewhere torch emulates them, slower."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu's, private
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_autocast(mode: str, device) -> bool:
    """bf16 autocast: 'auto' turns it on for CUDA devices with bf16 and for CPUs that multiply
    bf16 natively (AMX/AVX512-BF16); elsewhere a CPU would emulate it, slower.

    On such a CPU it costs no measured quality and, with attention kept in float32 there
    (lora.register_float32_sdpa), pays: SmolLM2-135M + LoRA r=16, 2 cores,
    bench/trainer_bench.py, 287.6 vs 182.7 response tokens/s on 2026-11-30 (it was no faster,
    167.3 vs 166.8, while attention ran in bf16). The french quality bake (256 stims, lr 5e-4,
    3 epochs) reached held-out closure 0.853 with it, 0.854 without
    (bench/results/2026-11-30-quality-experiments, E09 / E06).
    """
    import torch

    if mode == "off":
        return False
    if mode == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and native_bf16_cpu()


class TorchStepper:
    """Plain torch: the configured optimizer over the trainable parameters, clipping, the
    schedule; with several ranks the LoRA gradients are summed over ranks before clipping."""

    loss_scale = 1.0  # the gradients are summed over ranks, not averaged

    def __init__(self, peft_model, trainable, bake: BakeConfig, total_steps: int, world: int = 1):
        self.module, self.trainable, self.max_norm = peft_model, trainable, bake.optimizer.max_grad_norm
        self.world = world
        broadcast_parameters(trainable, world)
        self.optimizer = make_optimizer(trainable, bake.optimizer)
        self.scheduler = make_scheduler(self.optimizer, bake.scheduler, total_steps)

    def backward(self, loss, boundary: bool) -> None:
        loss.backward()

    def step(self) -> None:
        import torch

        sum_gradients(self.trainable, self.world)
        torch.nn.utils.clip_grad_norm_(self.trainable, self.max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def checkpoint_parts(self) -> dict:
        return {"optimizer": self.optimizer, "scheduler": self.scheduler}

    def gathered(self, modify: bool = False):
        return contextlib.nullcontext()  # every rank holds whole weights

    def close(self) -> None:
        pass


def weight_settings(config) -> dict:
    """The settings that can change the trained weights (declared ``weights=True``)."""
    out = {}
    for decl in declared_fields(type(config)):
        if decl.spec.key == "" or not decl.spec.weights:
            continue
        value = getattr(config, decl.name)
        out[decl.name] = weight_settings(value) if dataclasses.is_dataclass(value) else config_to_dict(value)
    return out


def _fingerprint(bake: BakeConfig, train, eval) -> str:
    h = hashlib.sha256(json.dumps(weight_settings(bake), sort_keys=True).encode())
    h.update(examples_fingerprint(train).encode() + examples_fingerprint(eval).encode())
    return h.hexdigest()


def _pad_id(tokenizer) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None) if tokenizer is not None else None
        if isinstance(value, int):
            return value
    return 0  # padded positions are masked out and never scored


def evaluate_kl(module, items, bake: BakeConfig, pad_id: int, device, autocast: bool = False,
                rank: int = 0, world: int = 1) -> float:
    """Per-token KL (unweighted, the true KL at temperature 1) over ``items``, no gradients,
    LoRA dropout off; with several ranks each takes every world-th batch and the sums are
    added up. The loop evaluates without autocast: reported eval KL is in the model's own
    precision. Batches go by length and fill the no-gradient logits budget (``token_chunks``),
    never below a training micro-batch, which fits with gradients."""
    import torch

    peft_model = getattr(module, "module", module)
    order = sorted(range(len(items)), key=lambda i: len(items[i].input_ids))
    chunks = token_chunks([items[i].n_response for i in order], vocab_size(peft_model), bake.micro_batch_size)
    batches = [[order[i] for i in chunk] for chunk in chunks]
    total, tokens = 0.0, 0
    lora_dropout(peft_model, False)
    try:
        with torch.no_grad():
            for indices, counted in padded_share(batches[rank::world], split_count(len(batches), world), order[:1]):
                chosen = [items[i] for i in indices]
                batch = collate(chosen, pad_id, device, teacher_prefix(peft_model, chosen))
                kl = float(batch_kl(module, batch, bake.loss, autocast).sum())
                if counted:
                    total, tokens = total + kl, tokens + batch.n_tokens
    finally:
        lora_dropout(peft_model, True)
    total, tokens = sum_over_ranks([total, tokens], world)
    return total / max(tokens, 1)


def backward_group(stepper, items, group, bake: BakeConfig, pad_id, device, autocast, rank=0, world=1):
    """Forward/backward of this rank's share of one optimizer step's examples; returns the
    summed (unweighted) (objective, KL) over the share's response tokens.

    The loss is normalised by the response tokens of the whole step (all micro-batches, all
    ranks), counted before any backward, so splitting a step differently gives the same
    gradient. A rank with fewer micro-batches than rank 0 runs weight-0 ones to keep the
    collectives in step (:mod:`bgit.train.distributed`).
    """
    n_tokens = sum(items[i].n_response for i in group)
    count = split_count(split_count(len(group), world), bake.micro_batch_size)
    share = padded_share(micro_batches(group[rank::world], items, bake.micro_batch_size), count, group[:1])
    model = getattr(stepper.module, "module", stepper.module)
    loss_sum = kl_sum = 0.0
    for j, (mb, counted) in enumerate(share):
        chosen = [items[i] for i in mb]
        batch = collate(chosen, pad_id, device, teacher_prefix(model, chosen))
        objective, kl = batch_objective(stepper.module, batch, bake.data, bake.loss, autocast)
        scale = stepper.loss_scale / n_tokens if counted else 0.0
        stepper.backward((objective * batch.weights).sum() * scale, boundary=j == len(share) - 1)
        if counted:
            loss_sum = loss_sum + objective.detach().sum()
            kl_sum = kl_sum + kl.detach().sum()
    return loss_sum, kl_sum


def train_adapter(model, tokenizer, train, eval, bake: BakeConfig, work_dir: Path, progress=None) -> TrainResult:
    """Bake: train a LoRA on ``model`` so that the student matches the cached teacher.

    ``bake`` is the bake's BakeConfig (validated when it was built). ``progress(advance_steps,
    total_steps, **info)`` is called after every optimizer step (info: kl, tokens_per_s, lr)
    and once at start when resuming (advance = steps already done).
    """
    started = time.perf_counter()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not train:
        raise EmptyTrainingSetError()
    need_topk = bake.loss == "topk"
    train_items = prepare_examples(train, bake.data.max_length, need_topk, not need_topk)
    eval_items = prepare_examples(eval, bake.data.max_length, need_topk, not need_topk)
    fingerprint = _fingerprint(bake, train, eval)
    seed_everything(bake.seed)
    runtime = Runtime.of(model, bake)
    peft_model = attach_lora(model, bake)
    run = None
    try:
        with training_setup(peft_model, bake.model, runtime.autocast and runtime.device.type == "cpu"):
            run = _Run(peft_model, tokenizer, train_items, eval_items, bake, work_dir, runtime, fingerprint)
            result = run.run(progress, started)
            run.stepper.close()  # a collective under ZeRO-3: every rank gets here
            return result
    except BaseException as error:
        if run is not None and runtime.world == 1:  # with peers, a collective could wait forever
            run.stepper.close()
        lost = lost_rank(error, runtime.rank, runtime.world)
        if lost is not None:
            raise lost from error
        raise
    finally:
        detach_lora(peft_model)


class _Run:
    """One training run's state; :meth:`run` is the loop."""

    def __init__(self, peft_model, tokenizer, train_items, eval_items, bake, work_dir, runtime, fingerprint):
        self.peft_model, self.bake, self.rt = peft_model, bake, runtime
        self.train_items, self.eval_items = train_items, eval_items
        self.work_dir, self.fingerprint = work_dir, fingerprint
        self.pad_id = _pad_id(tokenizer)
        # the global batch: the same steps whatever the number of ranks (bgit.train.distributed)
        self.group_size = bake.micro_batch_size * bake.gradient_accumulation_steps * runtime.world
        self.steps_per_epoch = math.ceil(len(train_items) / self.group_size)
        self.total_steps = self.steps_per_epoch * bake.epochs
        trainable = [p for p in peft_model.parameters() if p.requires_grad]
        if bake.deepspeed.enabled:
            from bgit.train.deepspeed_engine import DeepSpeedStepper

            self.stepper = DeepSpeedStepper(peft_model, trainable, bake, self.total_steps, runtime.autocast)
        else:
            self.stepper = TorchStepper(peft_model, trainable, bake, self.total_steps, runtime.world)
        # the frozen weights in bf16 for the steps, cast once instead of by autocast in every forward
        cast_once = runtime.autocast and runtime.device.type == "cpu" and not bake.deepspeed.enabled
        self.step_weights = FrozenBf16Weights(peft_model) if cast_once else contextlib.nullcontext()
        self.policy = CheckpointPolicy.of(bake.checkpoint)
        self.metrics: list[dict] = []
        self.state = LoopState()
        self.metrics_file = None
        self.window_start, self.window_tokens = time.perf_counter(), 0  # tokens/s since the last row

    def log(self, row: dict) -> None:
        self.metrics.append(row)
        if self.metrics_file is not None:
            self.metrics_file.write(json.dumps(row, sort_keys=True) + "\n")
            self.metrics_file.flush()

    def eval_kl(self) -> float:
        return evaluate_kl(self.stepper.module, self.eval_items, self.bake, self.pad_id, self.rt.device,
                           rank=self.rt.rank, world=self.rt.world)

    def resume(self, progress) -> str | None:
        """Restore the newest checkpoint (a bake interrupted mid-training); its path or None."""
        ckpt = None
        if self.policy.resume:
            ckpt = load_latest(self.work_dir / "checkpoints", self.fingerprint, self.rt.world)
        if ckpt is None:
            return None
        restore(ckpt, self.load_adapter, rank=self.rt.rank, **self.stepper.checkpoint_parts())
        self.metrics = ckpt.metrics
        self.state = LoopState(**ckpt.loop) if ckpt.loop else LoopState(step=ckpt.step, epoch=ckpt.epoch)
        if progress is not None and self.state.step:
            progress(self.state.step, self.total_steps, resumed=True)
        return str(ckpt.path)

    def load_adapter(self, tensors: dict) -> None:
        from peft import set_peft_model_state_dict

        with self.stepper.gathered(modify=True):
            set_peft_model_state_dict(self.peft_model, tensors)

    def adapter_tensors(self) -> dict:
        """The LoRA tensors, whole (a collective under ZeRO-3: every rank calls it)."""
        from peft import get_peft_model_state_dict

        with self.stepper.gathered():
            return {k: v.detach().clone().cpu() for k, v in get_peft_model_state_dict(self.peft_model).items()}

    def save(self) -> None:
        s = self.state
        save_checkpoint(self.work_dir / "checkpoints", s.epoch, s.step, self.fingerprint, self.metrics,
                        self.adapter_tensors(), rank=self.rt.rank, world=self.rt.world,
                        loop=dataclasses.asdict(s), **self.stepper.checkpoint_parts())

    def run(self, progress, started: float) -> TrainResult:
        resumed_from = self.resume(progress)
        if self.rt.is_main:
            self.metrics_file = open(self.work_dir / METRICS, "w", encoding="utf-8")
            # rows up to the checkpoint; later ones of a crashed run are dropped
            self.metrics_file.writelines(json.dumps(row, sort_keys=True) + "\n" for row in self.metrics)
        try:
            if self.eval_items and self.state.step == 0:
                self.log({"epoch": 0, "step": 0, "eval_kl": self.eval_kl()})
            for epoch in range(self.state.epoch, self.bake.epochs):
                self.train_epoch(epoch, progress)
        finally:
            if self.metrics_file is not None:
                self.metrics_file.close()
        return self.result(resumed_from, started)

    def train_epoch(self, epoch: int, progress) -> None:
        groups = epoch_groups(len(self.train_items), self.group_size, self.bake.seed, epoch)
        done_in_epoch = self.state.step - epoch * self.steps_per_epoch  # > 0 when resuming mid-epoch
        self.window_start, self.window_tokens = time.perf_counter(), 0
        for group in groups[done_in_epoch:]:
            lr = self.stepper.lr
            step_kl, step_loss, n_tokens = self.train_step(group)
            self.after_step(epoch, lr, step_kl, step_loss, n_tokens, progress)
        self.end_epoch(epoch)

    def train_step(self, group: list[int]) -> tuple[float, float, int]:
        """Forward/backward over the step's micro-batches, then the update; -> the step's
        per-token (KL, objective) over every rank's share, and its response tokens."""
        rt = self.rt
        with self.step_weights:
            loss_sum, kl_sum = backward_group(self.stepper, self.train_items, group, self.bake, self.pad_id,
                                              rt.device, rt.autocast, rt.rank, rt.world)
        self.stepper.step()
        self.state.step += 1
        # float() in sum_over_ranks is the step's one device sync
        loss_sum, kl_sum = sum_over_ranks([loss_sum, kl_sum], rt.world)
        n_tokens = sum(self.train_items[i].n_response for i in group)
        return kl_sum / n_tokens, loss_sum / n_tokens, n_tokens

    def after_step(self, epoch: int, lr: float, step_kl: float, step_loss: float, n_tokens: int, progress) -> None:
        """Running sums, the metrics row and progress; eval and checkpoint when due (an epoch's
        last step: in end_epoch, after its row)."""
        bake, s = self.bake, self.state
        s.epoch_kl += step_kl * n_tokens
        s.epoch_loss += step_loss * n_tokens
        s.epoch_tokens += n_tokens
        s.tokens += n_tokens
        self.window_tokens += n_tokens
        elapsed = time.perf_counter() - self.window_start
        tokens_per_s = self.window_tokens / elapsed if elapsed > 0 else 0.0
        if s.step % bake.train_log_iter_interval == 0 or s.step == self.total_steps:
            row = {"step": s.step, "epoch": epoch + 1, "lr": lr, "train_kl": step_kl, "tokens": s.tokens,
                   "tokens_per_s": round(tokens_per_s, 2)}
            if step_loss != step_kl:
                row["train_loss"] = step_loss
            self.log(row)
            self.window_start, self.window_tokens = time.perf_counter(), 0
        if progress is not None:
            progress(1, self.total_steps, kl=step_kl, tokens_per_s=tokens_per_s, lr=lr)
        if self.eval_items and bake.eval_interval and s.step % bake.eval_interval == 0:
            self.log({"step": s.step, "epoch": epoch + 1, "eval_kl": self.eval_kl()})
        if s.step < (epoch + 1) * self.steps_per_epoch and self.policy.at_step(s.step):
            self.save()

    def end_epoch(self, epoch: int) -> None:
        """The epoch's row (with eval KL), then a checkpoint when one is due."""
        s = self.state
        s.epoch = epoch + 1
        row = {"epoch": s.epoch, "step": s.step, "epoch_train_kl": s.epoch_kl / max(s.epoch_tokens, 1),
               "tokens": s.tokens}
        if s.epoch_loss != s.epoch_kl:
            row["epoch_train_loss"] = s.epoch_loss / max(s.epoch_tokens, 1)
        if self.eval_items:
            row["eval_kl"] = self.eval_kl()
        self.log(row)
        s.epoch_kl = s.epoch_loss = 0.0
        s.epoch_tokens = 0
        if s.epoch < self.bake.epochs and (self.policy.at_epoch(s.epoch) or self.policy.at_step(s.step)):
            self.save()

    def result(self, resumed_from: str | None, started: float) -> TrainResult:
        """The adapter (written by rank 0), and the numbers the bake record keeps."""
        adapter_dir = self.work_dir / "adapter"
        with self.stepper.gathered():
            if self.rt.is_main:
                save_adapter(self.peft_model, adapter_dir)
        epoch_rows = [r for r in self.metrics if "epoch_train_kl" in r]
        final_eval = [r["eval_kl"] for r in self.metrics if "eval_kl" in r]
        return TrainResult(
            adapter_dir=adapter_dir,
            metrics=self.metrics,
            final_train_kl=epoch_rows[-1]["epoch_train_kl"],
            final_eval_kl=final_eval[-1] if final_eval and self.eval_items else None,
            tokens=self.state.tokens,
            seconds=time.perf_counter() - started,
            resumed_from=resumed_from,
            autocast=self.rt.autocast,
            settings=config_to_dict(self.bake),
        )
