"""How much of a bake's training batches is padding: the training examples a bake of REPO trains
on (bgit's training_data on its input.yml and rollouts), cut into optimizer-step groups and
micro-batches exactly as bgit's trainer does, for the default micro-batch (4) and a few others,
and with BAKE.data.group_by_length at runs of 8 / 16 / 32 steps (bgit.train.data.LENGTH_GROUP_STEPS,
in the tree 3c33be1 only). Padding is what sequence packing could save.

    .venv/bin/python bench/results/2026-12-01-x86_64-epyc-2core/scripts/padding_share.py REPO
"""
import sys

import bake_data
from bgit.train import data
from bgit.train.data import epoch_groups, micro_batches

_, _, bake, rows = bake_data.load(sys.argv[1])
items = bake_data.prepared(rows.train, bake)
lengths = [len(i.input_ids) for i in items]
real = sum(lengths)
print(f"{len(items)} training rows, {real} tokens fed per epoch ({real / len(items):.1f} per row), "
      f"{sum(i.n_response for i in items)} response tokens; {bake.epochs} epochs")


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
