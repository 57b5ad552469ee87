"""The in-training eval's time, batched as before (micro-batches of 4) and now (by length, up to
BATCH_LOGITS logits, at least a micro-batch), alternating in one process: SmolLM2-135M fp32,
bgit's default LoRA (randomised B so the KL is not the base's), 2 threads, on the held-out split a
french bake trains beside (10% of the stims of a committed french rollout, the rows it evals;
french's student has no prompt, so the context is the stim alone).

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/eval_kl_batching.py ROLLOUT_JSONL
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
from bgit.train import data
from bgit.train.data import TrainExample, prepare_examples
from bgit.train.lora import attach_lora
from bgit.train.loop import evaluate_kl

torch.set_num_threads(2)
model, tokenizer = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
for p in model.parameters():
    p.requires_grad_(False)
bake = from_dict(BakeConfig, {"checkpoint": []})
_, rows = split_by_stim(read_jsonl(Path(sys.argv[1])), bake.data.train_eval_split, bake.data.seed)
examples = []
for row in rows:
    record = RolloutRecord.from_row(row)
    examples.append(TrainExample(render_context(tokenizer, [], user=row["stim"]), record.response_ids.tolist(),
                                 record.topk_ids, record.topk_logprobs, record.tail_logprob))
items = prepare_examples(examples, bake.data.max_length, True, False)
print(f"{len(items)} held-out items, {sum(len(i.input_ids) for i in items)} tokens fed, "
      f"{sum(i.n_response for i in items)} scored; micro_batch_size {bake.micro_batch_size}; "
      f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
peft = attach_lora(model, bake)
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.01)
budget = data.BATCH_LOGITS
times = {"before: micro-batches": [], "after: logits budget": []}
for r in range(3):
    for name in times:
        data.BATCH_LOGITS = 1 if name.startswith("before") else budget  # budget 1 token: micro-batches
        t = time.perf_counter()
        kl = evaluate_kl(peft, items, bake, 0, "cpu")
        times[name].append(time.perf_counter() - t)
        print(f"round {r}: {name}: {times[name][-1]:.2f} s, eval KL {kl:.7f}", flush=True)
for name, ts in times.items():
    print(f"{name}: min {min(ts):.2f} s, median {np.median(ts):.2f} s over {len(ts)} runs")
