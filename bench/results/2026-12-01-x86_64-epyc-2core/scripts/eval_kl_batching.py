"""The in-training eval's time, batched as before (micro-batches of 4) and now (by length, up to
BATCH_LOGITS logits, at least a micro-batch), alternating in one process: SmolLM2-135M fp32,
bgit's default LoRA (B randomised, so the KL is not the base's), 2 threads, on the held-out rows
a bake of REPO evals during training (bgit's training_data on its input.yml and rollouts).
"before" sets BATCH_LOGITS to 1, so every batch holds exactly micro_batch_size items of the
length-sorted order: the batches of the code before da69d0f.

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/eval_kl_batching.py REPO
"""
import sys
import time

import numpy as np
import torch

import bake_data
from bgit.train import data
from bgit.train.loop import evaluate_kl

model, tokenizer, bake, rows = bake_data.load(sys.argv[1])
items = bake_data.prepared(rows.held_out, bake)
print(f"{len(items)} held-out items, {sum(len(i.input_ids) for i in items)} tokens fed, "
      f"{sum(i.n_response for i in items)} scored; micro_batch_size {bake.micro_batch_size}; "
      f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
peft = bake_data.randomised_adapter(model, bake)
budget = data.BATCH_LOGITS
times = {"before: micro-batches": [], "after: logits budget": []}
for r in range(3):
    for name in times:
        data.BATCH_LOGITS = 1 if name.startswith("before") else budget
        t = time.perf_counter()
        kl = evaluate_kl(peft, items, bake, 0, "cpu")
        times[name].append(time.perf_counter() - t)
        print(f"round {r}: {name}: {times[name][-1]:.2f} s, eval KL {kl:.7f}", flush=True)
for name, ts in times.items():
    print(f"{name}: min {min(ts):.2f} s, median {np.median(ts):.2f} s over {len(ts)} runs")
