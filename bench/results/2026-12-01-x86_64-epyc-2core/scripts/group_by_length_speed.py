"""Training time with and without BAKE.data.group_by_length on the same examples, alternating in
one process: 256 rows of a committed french rollout's training split (student contexts rendered
as the trainer feeds them), one pass = one epoch over them (64 optimizer steps of 4), SmolLM2-135M
fp32, bgit's default LoRA and AdamW, through the trainer's own epoch_groups, backward_group and
TorchStepper, 2 threads. A first pass (off) warms up and is not counted; the rounds then
alternate which mode runs first (off/on, on/off, off/on), because this machine's speed drifts.

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/group_by_length_speed.py ROLLOUT_JSONL
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # this checkout's bgit
import numpy as np
import torch

from bgit.config import from_dict
from bgit.config.schema import BakeConfig
from bgit.models import load_model, render_context, resolve_model
from bgit.pipeline.dataset import split_by_stim
from bgit.record import RolloutRecord, read_jsonl
from bgit.train.data import TrainExample, epoch_groups, micro_batches, prepare_examples
from bgit.train.lora import attach_lora, detach_lora, training_setup
from bgit.train.loop import TorchStepper, backward_group

ROWS, ROUNDS = 256, 3
torch.set_num_threads(2)
model, tokenizer = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
for p in model.parameters():
    p.requires_grad_(False)
bake = from_dict(BakeConfig, {"checkpoint": []})
train, _ = split_by_stim(read_jsonl(Path(sys.argv[1])), bake.data.train_eval_split, bake.data.seed)
examples = []
for row in train[:ROWS]:
    record = RolloutRecord.from_row(row)
    examples.append(TrainExample(render_context(tokenizer, [], user=row["stim"]), record.response_ids.tolist(),
                                 record.topk_ids, record.topk_logprobs, record.tail_logprob))
items = prepare_examples(examples, bake.data.max_length, True, False)
lengths = [len(i.input_ids) for i in items]
size = bake.micro_batch_size
modes = {"group_by_length off": None, "group_by_length on": lengths}
for name, lens in modes.items():
    groups = epoch_groups(len(items), size, bake.seed, 0, lens)
    fed = sum(len(b) * max(lengths[i] for i in b) for g in groups for b in micro_batches(g, items, size))
    print(f"{name}: {len(groups)} steps, {fed} positions fed for {sum(lengths)} tokens "
          f"(padding {100 * (fed - sum(lengths)) / fed:.1f}%)", flush=True)
times = {name: [] for name in modes}
schedule = [("warm-up", "group_by_length off")] + [
    (r, name) for r in range(ROUNDS) for name in (list(modes) if r % 2 == 0 else list(modes)[::-1])]
for r, name in schedule:
    lens = modes[name]
    peft = attach_lora(model, bake)
    groups = epoch_groups(len(items), size, bake.seed, 0, lens)
    stepper = TorchStepper(peft, [p for p in peft.parameters() if p.requires_grad], bake, len(groups))
    with training_setup(peft, bake.model, False):
        t = time.perf_counter()
        for group in groups:
            backward_group(stepper, items, group, bake, 0, "cpu", False)
            stepper.step()
        seconds = time.perf_counter() - t
    detach_lora(peft)
    if r != "warm-up":
        times[name].append(seconds)
    print(f"round {r}: {name}: {seconds:.1f} s for {len(groups)} steps", flush=True)
for name, ts in times.items():
    print(f"{name}: {' / '.join(f'{t:.1f}' for t in ts)} s")
off, on = (np.median(times[n]) for n in modes)
print(f"group_by_length on takes {on / off:.3f}x the time of off")
