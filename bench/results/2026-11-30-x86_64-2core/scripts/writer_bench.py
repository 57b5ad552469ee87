import sys, time, tempfile
import torch
from bgit.config.examples import write_example
from bgit.config.load import load_config
from bgit.models import load_model, resolve_model
import bgit.pipeline.stim as stim
rows_per_call = [int(x) for x in sys.argv[1].split(",")]
with tempfile.TemporaryDirectory() as d:
    config = load_config(write_example("customer_service", d), root=d)
target = config.targets[0]
target.generators = [g for g in target.generators if g.type == "oneshot_qs"]
prompt = config.prompt_for(target)
model, tok = load_model(resolve_model("smollm2-135m"))
calls = []
orig = model.generate
def generate(*a, **k):
    out = orig(*a, **k); calls.append((out.shape[0], out.shape[1] - k["input_ids"].shape[1])); return out
model.generate = generate
for n in rows_per_call:
    stim.QUESTIONS_PER_CALL = n
    calls.clear()
    t = time.perf_counter()
    rows = stim.generate_stims(target, prompt, seed=config.bake.seed, model_loader=lambda name: (model, tok))
    print(f"rows per call {n}: {len(rows)} questions in {time.perf_counter() - t:.1f} s; calls (rows, new tokens): {calls}", flush=True)
    for r in rows[:6]: print("   ", r["text"][:90])
