"""Where the trainer's eval KL spends its time: a torch profile of one evaluate_kl over french's
100 held-out rows, batched as bgit now batches them (after a warm-up on 30 of them); the same
set-up as eval_kl_batching.py beside it.

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/eval_kl_profile.py ROLLOUT_JSONL
"""
import sys
import time
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

here = Path(__file__).resolve().parent
# eval_kl_batching.py up to its timed rounds: the model, the adapter and the items
source = (here / "eval_kl_batching.py").read_text().split("budget = data.BATCH_LOGITS")[0]
namespace = {"__file__": str(here / "eval_kl_batching.py"), "__name__": "setup"}
exec(compile(source, str(here / "eval_kl_batching.py"), "exec"), namespace)
evaluate_kl, peft, items, bake = (namespace[k] for k in ("evaluate_kl", "peft", "items", "bake"))
evaluate_kl(peft, items[:30], bake, 0, "cpu")
with profile(activities=[ProfilerActivity.CPU]) as prof:
    started = time.perf_counter()
    evaluate_kl(peft, items, bake, 0, "cpu")
    print(f"evaluate_kl: {time.perf_counter() - started:.2f} s (under the profiler)")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
