"""Optimizer steps per second with LoRA on every layer against layers 10-29 only (E28's), in one
process, alternating: SmolLM2-135M fp32, bgit's default LoRA and AdamW, 4 x (student ~25 +
32 response tokens) per step, through the trainer's own backward_group and TorchStepper.

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/train_step_layers.py
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # this checkout's bgit
import numpy as np
import torch

from bgit.config import from_dict
from bgit.config.schema import BakeConfig
from bgit.models import load_model, resolve_model
from bgit.train.data import TrainExample, prepare_examples
from bgit.train.lora import attach_lora, detach_lora, training_setup
from bgit.train.loop import TorchStepper, backward_group

STEPS, ROUNDS = 8, 3
model, _ = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
for p in model.parameters():
    p.requires_grad_(False)
rng = np.random.default_rng(0)
examples = []
for _ in range(4 * STEPS):
    ns, nr = int(rng.integers(15, 40)), 32
    examples.append(TrainExample(rng.integers(100, 40000, ns).tolist(), rng.integers(100, 40000, nr).tolist(),
                                 rng.integers(0, 49152, (nr, 20)).astype(np.int32),
                                 np.sort(np.log(rng.dirichlet(np.ones(21), nr)[:, :20].astype(np.float32)), -1)[:, ::-1].copy(),
                                 np.full(nr, -3.0, np.float32)))
items = prepare_examples(examples, 2048, True, False)
variants = {"all 30 layers": {}, "layers 10-29": {"layers_to_transform": list(range(10, 30))}}
times = {name: [] for name in variants}
for r in range(ROUNDS):
    for name, options in variants.items():
        bake = from_dict(BakeConfig, {"checkpoint": [], "model": {"peft_config": options}})
        peft = attach_lora(model, bake)
        stepper = TorchStepper(peft, [p for p in peft.parameters() if p.requires_grad], bake, STEPS + 1)
        with training_setup(peft, bake.model, False):
            backward_group(stepper, items, [0, 1, 2, 3], bake, 0, "cpu", False)  # warm-up
            stepper.step()
            t = time.perf_counter()
            for s in range(STEPS):
                backward_group(stepper, items, list(range(4 * s, 4 * s + 4)), bake, 0, "cpu", False)
                stepper.step()
            times[name].append((time.perf_counter() - t) / STEPS)
        detach_lora(peft)
        print(f"round {r}: {name}: {1000 * times[name][-1]:.0f} ms per step", flush=True)
for name, ts in times.items():
    print(f"{name}: median {1000 * np.median(ts):.0f} ms per step over {ROUNDS} rounds of {STEPS}")
base = np.median(times["all 30 layers"])
print(f"layers 10-29 take {np.median(times['layers 10-29']) / base:.2f}x the time of all 30")
