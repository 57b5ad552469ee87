"""What ``loss: full`` costs with a long teacher prompt, its shared prefix run once per
micro-batch against whole teacher rows, and the default top-K loss beside them: one process,
alternating, through the trainer's own backward_group and TorchStepper. The rows: the first
training rows of a bake repository (default: the quality bench's customer_service, whose
teacher prompt is the 330-token AcmeAir policy), through bgit's training_data with loss full.

    .venv/bin/python bench/results/2026-12-02-x86_64-epyc-2core/scripts/full_loss_prefix.py [REPO]
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # this checkout's bgit
import numpy as np
import torch

from bgit.config import load_config
from bgit.models import load_model, resolve_model
from bgit.pipeline.dataset import training_data
from bgit.train import loop
from bgit.train.data import prepare_examples, teacher_prefix
from bgit.train.lora import attach_lora, detach_lora, training_setup

STEPS, ROUNDS = 8, 3
repo = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/qb/w/customer_service")
torch.set_num_threads(2)
model, tokenizer = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
for p in model.parameters():
    p.requires_grad_(False)
config = load_config(repo / "input.yml")
config.bake.loss = "full"
dirs = {t.name: repo / "targets" / t.name for t in config.targets}
examples = training_data(config, dirs, tokenizer).train[: 4 * (STEPS + 1)]
items = prepare_examples(examples, config.bake.data.max_length, True, True)
groups = [list(range(4 * s, 4 * s + 4)) for s in range(STEPS + 1)]
prefixes = [teacher_prefix(model, [items[i] for i in g]) for g in groups]
print(f"{repo.name}: {len(items)} rows; student context {np.mean([it.n_student for it in items]):.0f} tokens, "
      f"teacher context {np.mean([it.n_teacher for it in items]):.0f}, response {np.mean([it.n_response for it in items]):.0f} "
      f"(means); shared teacher prefix per micro-batch {min(prefixes)}-{max(prefixes)} tokens", flush=True)

whole_rows = lambda model, items: 0  # noqa: E731  (the trainer before this change)
variants = {"topk (default)": ("topk", loop.teacher_prefix), "full, prefix shared": ("full", loop.teacher_prefix),
            "full, whole teacher rows": ("full", whole_rows)}
times = {name: [] for name in variants}
kls = {name: [] for name in variants}
for r in range(ROUNDS):
    for name, (loss, prefix_of) in variants.items():
        config.bake.loss = loss
        loop.teacher_prefix = prefix_of
        peft = attach_lora(model, config.bake)
        stepper = loop.TorchStepper(peft, [p for p in peft.parameters() if p.requires_grad], config.bake, STEPS + 1)
        with training_setup(peft, config.bake.model, False):
            _, kl = loop.backward_group(stepper, items, groups[0], config.bake, 0, "cpu", False)  # warm-up
            stepper.step()
            t, step_kls = time.perf_counter(), [float(kl)]
            for group in groups[1:]:
                _, kl = loop.backward_group(stepper, items, group, config.bake, 0, "cpu", False)
                stepper.step()
                step_kls.append(float(kl))
            times[name].append((time.perf_counter() - t) / STEPS)
            kls[name] = step_kls
        detach_lora(peft)
        print(f"round {r}: {name}: {1000 * times[name][-1]:.0f} ms per step", flush=True)
for name, ts in times.items():
    print(f"{name}: median {1000 * np.median(ts):.0f} ms per step over {ROUNDS} rounds of {STEPS}")
shared, plain = np.median(times["full, prefix shared"]), np.median(times["full, whole teacher rows"])
print(f"full loss: whole rows / prefix shared = {plain / shared:.2f}x; prefix shared / topk = "
      f"{shared / np.median(times['topk (default)']):.2f}x")
first, *later = [abs(a - b) / b for a, b in zip(kls["full, prefix shared"], kls["full, whole teacher rows"])]
print(f"KL sum of the first step (the same weights), prefix shared against whole rows: relative difference "
      f"{first:.1e}; of the {STEPS} later steps at most {max(later):.1e} (Adam's first steps move each weight "
      f"by about the learning rate whatever its gradient's size, so rounding-level gradient differences "
      f"make the runs' weights drift apart)")
