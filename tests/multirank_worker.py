"""One rank of the trainer-level multi-rank test: ``torchrun --standalone --nproc_per_node 2
tests/multirank_worker.py OUT_DIR MODE...`` (MODE: torch, zero2, zero3, full; full is plain
torch with ``loss: full``, the teacher recomputed in every micro-batch from its shared prefix).

For each mode, on a tiny random Llama:

- gradients: one optimizer step's gradient over a ragged step (5 examples, micro-batch 2:
  rank 0 trains 3 examples in 2 micro-batches, rank 1 two in 1 plus a weight-0 one), summed
  over the ranks the way the stepper does it, against the one-process gradient of the same
  step computed on each rank alone (micro-batch 4, no collectives);
- resume: a 3-epoch run, then a second run on the same work directory, which resumes from the
  epoch-2 checkpoint and must reproduce the first run's adapter;
- the parent model must come back unchanged (ZeRO-3 partitions it during training).

Rank 0 writes OUT_DIR/result.json; the adapters stay under OUT_DIR/<mode>/.

MODE ``lost`` (run last): rank 1 exits after the first optimizer step; rank 0, waiting for it
in the next step's gradient sum, writes the error it gets to OUT_DIR/lost.txt. Rank 0 survives
the SIGTERM torchrun sends when it sees rank 1 go (it sends SIGKILL 30 s later), so the report
does not depend on which of the two comes first; it prints its stack to stderr instead, which
says where it was if the report never comes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from train_helpers import bake_settings, baking_examples, tiny_llama  # noqa: E402

from bgit.train import train_adapter  # noqa: E402
from bgit.train.data import prepare_examples  # noqa: E402
from bgit.train.distributed import init_process_group, rank_world, sum_gradients  # noqa: E402
from bgit.train.loop import TorchStepper, backward_group  # noqa: E402
from bgit.train.lora import attach_lora, detach_lora  # noqa: E402

GROUP = [7, 1, 4, 9, 2]
CPU = torch.device("cpu")


def settings_for(mode: str, micro_batch_size: int, **extra):
    zero = mode.startswith("zero")
    deepspeed = {"enabled": zero, "zero_stage": int(mode[-1]) if zero else 0}
    loss = "full" if mode == "full" else "topk"
    return bake_settings(micro_batch_size=micro_batch_size, deepspeed=deepspeed, loss=loss, **extra)


def step_gradients(model, items, settings, rank: int, world: int) -> dict:
    """The summed LoRA gradients of one step over GROUP (LoRA B non-zero, so A gets gradients too)."""
    torch.manual_seed(0)
    peft_model = attach_lora(model, settings)
    stepper = None
    try:
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.2)
        named = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
        trainable = [p for _, p in named]
        if settings.deepspeed.enabled:
            from deepspeed.utils import safe_get_full_grad

            from bgit.train.deepspeed_engine import DeepSpeedStepper

            stepper = DeepSpeedStepper(peft_model, trainable, settings, 1, False)
            backward_group(stepper, items, GROUP, settings, 0, CPU, False, rank, world)
            return {n: safe_get_full_grad(p).detach().clone().reshape(p.ds_shape if hasattr(p, "ds_shape") else p.shape)
                    for n, p in named}
        stepper = TorchStepper(peft_model, trainable, settings, 1, world)
        backward_group(stepper, items, GROUP, settings, 0, CPU, False, rank, world)
        sum_gradients(trainable, world)  # what stepper.step() does first
        return {n: p.grad.detach().clone() for n, p in named}
    finally:
        if stepper is not None:
            stepper.close()
        detach_lora(peft_model)


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def adapter_tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def run_mode(mode: str, model, examples, out: Path, rank: int, world: int) -> dict:
    full = mode == "full"
    items = prepare_examples(examples, 512, not full, full)
    alone = step_gradients(model, items, settings_for("full" if full else "torch", 4), 0, 1)
    together = step_gradients(model, items, settings_for(mode, 2), rank, world)
    probe = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = model(input_ids=probe).logits
    settings = settings_for(mode, 2, epochs=3)
    work = out / mode
    first = train_adapter(model, None, examples, examples[:5], settings, work)
    first_adapter = adapter_tensors(first.adapter_dir) if rank == 0 else {}
    again = train_adapter(model, None, examples, examples[:5], settings, work)
    with torch.no_grad():
        unchanged = torch.equal(model(input_ids=probe).logits, before)
    result = {"gradient_max_diff": max_diff(alone, together),
              "gradient_max_abs": max(float(g.abs().max()) for g in alone.values()),
              "resumed_from": again.resumed_from, "unchanged": unchanged,
              "eval_kl": [r["eval_kl"] for r in first.metrics if "eval_kl" in r]}
    if rank == 0:
        result["resume_max_diff"] = max_diff(first_adapter, adapter_tensors(again.adapter_dir))
    return result


def lose_a_rank(model, examples, out: Path, rank: int) -> None:
    import faulthandler
    import os
    import signal
    import time

    from bgit.train import TrainError

    if rank == 0:
        faulthandler.register(signal.SIGTERM, all_threads=True, chain=False)

    def progress(advance, total, **info):
        if rank == 1:
            time.sleep(2)  # rank 0 is waiting in the next step's gradient sum by now
            os._exit(3)

    try:
        train_adapter(model, None, examples, [], settings_for("torch", 2, epochs=3), out / "lost", progress=progress)
    except TrainError as error:
        (out / "lost.txt").write_text(f"{type(error).__name__}: {error}")


def main() -> None:
    out, modes = Path(sys.argv[1]), sys.argv[2:]
    init_process_group("cpu")  # torchrun's group; DeepSpeed joins it
    rank, world = rank_world()
    model = tiny_llama(seed=3)
    examples = baking_examples(model, 10, seed=4)
    examples[2].weight = 2.0
    results = {mode: run_mode(mode, model, examples, out, rank, world) for mode in modes if mode != "lost"}
    if rank == 0:
        (out / "result.json").write_text(json.dumps({"world": world, **results}))
    if "lost" in modes:
        lose_a_rank(model, examples, out, rank)


if __name__ == "__main__":
    main()
