"""A training step under CPU bf16 autocast with the frozen weights cast by autocast in every forward
("per-forward") or once (bgit.train.lora.FrozenBf16Weights, "cast-once"), alternating in one process.

SmolLM2-135M + bgit's default LoRA (r 16, all-linear), micro-batch 4 of synthetic examples (student
15-39 tokens + 32 response tokens, top-20 + tail), bgit's batch_objective + backward + AdamW, as
bench/results/2026-12-01-x86_64-epyc-2core/scripts/train_step_profile.py but under autocast.
    OMP_NUM_THREADS=2 .venv/bin/python <this file> [--profile]
"""
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # this checkout's bgit
import numpy as np
import torch

from bgit.config import from_dict
from bgit.config.schema import BakeConfig
from bgit.models import load_model, resolve_model
from bgit.train.data import TrainExample, collate, prepare_examples
from bgit.train.lora import FrozenBf16Weights, attach_lora, training_setup
from bgit.train.loss import batch_objective

torch.manual_seed(0)
model, tok = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
for p in model.parameters():
    p.requires_grad_(False)
bake = from_dict(BakeConfig, {"checkpoint": []})
rng = np.random.default_rng(0)
examples = []
for i in range(64):
    ns, nr = int(rng.integers(15, 40)), 32
    examples.append(TrainExample(
        rng.integers(100, 40000, ns).tolist(), rng.integers(100, 40000, nr).tolist(),
        rng.integers(0, 49152, (nr, 20)).astype(np.int32),
        np.sort(np.log(rng.dirichlet(np.ones(21), nr)[:, :20].astype(np.float32)), -1)[:, ::-1].copy(),
        np.full(nr, -3.0, np.float32)))
items = prepare_examples(examples, 2048, True, False)
peft = attach_lora(model, bake)
trainable = [p for p in peft.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4)
cast_once = FrozenBf16Weights(peft)
print("lora", bake.lora.r, bake.lora.target_modules, "mbs", bake.micro_batch_size, "frozen linears", len(cast_once.swaps))


def step(j, weights):
    b = collate(items[4 * j % 64: 4 * j % 64 + 4], 0, "cpu")
    with weights:
        obj, _ = batch_objective(peft, b, bake.data, "topk", True)
        (obj.sum() / b.n_tokens).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return b.input_ids.numel()


modes = {"per-forward": contextlib.nullcontext(), "cast-once": cast_once}
with training_setup(peft, bake.model, True):
    for j in range(3):
        step(j, cast_once)
        step(j, modes["per-forward"])
    times = {name: [] for name in modes}
    for rnd in range(6):  # alternate, each mode 10 steps a round, first mode switching (ABBA)
        order = list(modes) if rnd % 2 == 0 else list(modes)[::-1]
        for name in order:
            for j in range(10):
                t = time.perf_counter()
                step(j, modes[name])
                times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        print(f"{name}: step ms median {1000 * np.median(ts):.0f} min {1000 * min(ts):.0f} mean {1000 * np.mean(ts):.0f} ({len(ts)} steps)")
    if "--profile" in sys.argv:
        from torch.profiler import ProfilerActivity, profile

        for name, weights in modes.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for j in range(5):
                    step(j, weights)
            print(f"## profile, {name}, 5 steps")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
