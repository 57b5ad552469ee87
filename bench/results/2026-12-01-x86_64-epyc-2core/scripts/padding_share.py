"""How much of a bake's training batches is padding: the real token counts of a committed
rollout's training split (its stims rendered with the student's chat context, as the trainer
feeds them), cut into optimizer-step groups and micro-batches exactly as bgit's trainer does,
for the default micro-batch (4) and a few others, and with BAKE.data.group_by_length at runs of
8 / 16 / 32 steps (bgit.train.data.LENGTH_GROUP_STEPS). Padding is what sequence packing could save.

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/padding_share.py ROLLOUT_JSONL [SYSTEM_PROMPT]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # this checkout's bgit
from bgit.config import from_dict
from bgit.config.schema import BakeConfig
from bgit.models import load_model, render_context, resolve_model
from bgit.pipeline.dataset import split_by_stim
from bgit.record import read_jsonl
from bgit.train import data
from bgit.train.data import epoch_groups, micro_batches

_, tokenizer = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
student = [{"role": "system", "content": sys.argv[2]}] if len(sys.argv) > 2 else []
bake = from_dict(BakeConfig, {"checkpoint": []})
train, _ = split_by_stim(read_jsonl(Path(sys.argv[1])), bake.data.train_eval_split, bake.data.seed)


class Item:
    def __init__(self, row):
        self.n_response = len(row["response_ids"])
        self.input_ids = [0] * (len(render_context(tokenizer, student, user=row["stim"])) + self.n_response - 1)


items = [Item(row) for row in train]
real = sum(len(i.input_ids) for i in items)
print(f"{len(items)} training rows, {real} tokens fed per epoch ({real / len(items):.1f} per row), "
      f"{sum(i.n_response for i in items)} response tokens")
lengths = [len(i.input_ids) for i in items]


def report(label, size, grouped):
    fed = 0
    for epoch in range(bake.epochs):
        groups = epoch_groups(len(items), size * bake.gradient_accumulation_steps, bake.seed, epoch,
                              lengths if grouped else None)
        for group in groups:
            for batch in micro_batches(group, items, size):
                fed += len(batch) * max(lengths[i] for i in batch)
    padding = fed - real * bake.epochs
    print(f"{label}: {fed} positions fed over {bake.epochs} epochs, padding {padding} = {100 * padding / fed:.1f}% of them")


for size in (1, 2, 4, 8, 16):
    report(f"micro-batch {size:2d}", size, False)
for steps in (8, 16, 32):
    data.LENGTH_GROUP_STEPS = steps
    report(f"micro-batch  4, group_by_length, runs of {steps} steps", 4, True)
