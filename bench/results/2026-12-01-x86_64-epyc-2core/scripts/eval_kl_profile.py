"""Where the trainer's eval KL spends its time: a torch profile of one evaluate_kl, batched as bgit
batches it, over the held-out rows of REPO (the set-up of eval_kl_batching.py beside it), after a
warm-up on 30 of them.

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/eval_kl_profile.py REPO
"""
import sys
import time

from torch.profiler import ProfilerActivity, profile

import bake_data
from bgit.train.loop import evaluate_kl

model, tokenizer, bake, rows = bake_data.load(sys.argv[1])
items = bake_data.prepared(rows.held_out, bake)
peft = bake_data.randomised_adapter(model, bake)
evaluate_kl(peft, items[:30], bake, 0, "cpu")
with profile(activities=[ProfilerActivity.CPU]) as prof:
    started = time.perf_counter()
    evaluate_kl(peft, items, bake, 0, "cpu")
    print(f"{len(items)} held-out items; evaluate_kl: {time.perf_counter() - started:.2f} s (under the profiler)")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
