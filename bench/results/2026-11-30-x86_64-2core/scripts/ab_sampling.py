import sys, torch, time
sys.path.insert(0, "bench")
from rollout_bench import make_stims
from bgit.config.schema import PromptConfig, TargetConfig
from bgit.models import load_model, resolve_model
from bgit.pipeline.rollout import rollout
model, tok = load_model(resolve_model("smollm2-135m"), dtype=sys.argv[1])
prompt = PromptConfig(teacher_messages=[{"role": "system", "content": "You are a pirate. Answer in pirate speak."}])
target = TargetConfig(max_tokens=64, temperature=1.0, top_k=20)
stims = make_stims(64)
orig = torch.multinomial
def icdf(probs, num_samples, replacement=False, *, generator=None, out=None):
    assert num_samples == 1 and probs.dim() == 2
    c = probs.float().cumsum(-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=c.dtype) * c[:, -1:]
    return torch.searchsorted(c, u, right=True).clamp_(max=probs.shape[1] - 1)
for rnd in range(2):
    for name, f in (("multinomial", orig), ("inverse-cdf", icdf)):
        torch.multinomial = f
        t = time.perf_counter()
        rows = rollout(model, tok, stims, prompt, target, seed=0, batch_size=64, min_new_tokens=64)
        n = sum(len(r["response_ids"]) for r in rows)
        print(name, f"{n / (time.perf_counter() - t):.1f} tok/s", flush=True)
