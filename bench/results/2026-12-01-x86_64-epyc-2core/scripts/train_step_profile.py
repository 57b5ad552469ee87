"""Where a training step's time goes: SmolLM2-135M + default LoRA, 4 x (student ~25 + 32 response)."""
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # this checkout's bgit
import numpy as np, torch
from bgit.models import load_model, resolve_model
from bgit.config import from_dict
from bgit.config.schema import BakeConfig
from bgit.train.lora import attach_lora, training_setup
from bgit.train.data import TrainExample, prepare_examples, collate
from bgit.train.loss import batch_objective

torch.manual_seed(0)
model, tok = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
for p in model.parameters():
    p.requires_grad_(False)
bake = from_dict(BakeConfig, {"checkpoint": []})
print("lora", bake.lora.r, bake.lora.target_modules, "mbs", bake.micro_batch_size, "accum", bake.gradient_accumulation_steps)
rng = np.random.default_rng(0)
exs = []
for i in range(64):
    ns = int(rng.integers(15, 40)); nr = 32
    exs.append(TrainExample(rng.integers(100, 40000, ns).tolist(), rng.integers(100, 40000, nr).tolist(),
                            rng.integers(0, 49152, (nr, 20)).astype(np.int32),
                            np.sort(np.log(rng.dirichlet(np.ones(21), nr)[:, :20].astype(np.float32)), -1)[:, ::-1].copy(),
                            np.full(nr, -3.0, np.float32)))
items = prepare_examples(exs, 2048, True, False)
peft = attach_lora(model, bake)
trainable = [p for p in peft.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4)
mode = sys.argv[1] if len(sys.argv) > 1 else "plain"
if mode == "compile":
    peft.base_model.model.model.forward = torch.compile(peft.base_model.model.model.forward, dynamic=True)
def step(j):
    b = collate(items[4 * j % 64: 4 * j % 64 + 4], 0, "cpu")
    obj, _ = batch_objective(peft, b, bake.data, "topk", False)
    (obj.sum() / b.n_tokens).backward()
    opt.step(); opt.zero_grad(set_to_none=True)
    return b.input_ids.numel()
with training_setup(peft, bake.model, False):
    t0 = time.perf_counter()
    for j in range(3):
        step(j)
    print("warm-up", round(time.perf_counter() - t0, 1), "s")
    ts = []; toks = 0
    for j in range(3, 23):
        t = time.perf_counter(); toks += step(j); ts.append(time.perf_counter() - t)
    print(mode, "step ms median", round(1000 * np.median(ts)), "mean", round(1000 * np.mean(ts)), "tokens/s", round(toks / sum(ts)))
    if mode == "plain" and "--profile" in sys.argv:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for j in range(23, 28):
                step(j)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
