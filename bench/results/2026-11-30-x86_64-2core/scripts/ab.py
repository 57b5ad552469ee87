"""Interleaved A/B of one training micro-batch: old autograd top-K loss vs the fused one."""
import sys, time, statistics, torch
sys.path.insert(0, "/work/main")
from peft import LoraConfig, get_peft_model
from bgit.models import load_model, resolve_model
from bgit.train.loss import topk_bins as fused_bins, kl
torch.set_num_threads(2)
def old_bins(student_logits, topk_ids, topk_logprobs, tail_logprob):
    logits = student_logits.float(); lse = torch.logsumexp(logits, dim=-1); ids = topk_ids.long()
    logq_k = logits.gather(-1, ids) - lse.unsqueeze(-1)
    logq_tail = torch.logsumexp(logits.scatter(-1, ids, -1e30), dim=-1) - lse
    return torch.cat([logq_k, logq_tail.unsqueeze(-1)], -1), torch.cat([topk_logprobs.float(), tail_logprob.float().unsqueeze(-1)], -1)
auto = sys.argv[1] == "autocast"
model, tok = load_model(resolve_model("smollm2-135m"), dtype="float32")
pm = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")); pm.eval()
B, L, R, K = 4, 80, 60, 20
ids = torch.randint(0, 49000, (B, L)); mask = torch.ones_like(ids)
keep = torch.zeros_like(ids, dtype=torch.bool); keep[:, L - R:] = True
tk = torch.randint(0, 49000, (B * R, K)); tl = torch.log_softmax(torch.randn(B * R, K + 1), -1)
opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-6)
def step(bins):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=auto):
        logits = pm(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits.reshape(-1, 49152)
        logq, logp = bins(logits, tk, tl[:, :K], tl[:, K]); loss = kl(logp, logq).mean()
    loss.backward(); opt.step(); opt.zero_grad()
times = {"old": [], "fused": []}
for i in range(2): step(old_bins); step(fused_bins)
for i in range(int(sys.argv[2])):
    for name, f in (("old", old_bins), ("fused", fused_bins)):
        t = time.perf_counter(); step(f); times[name].append(time.perf_counter() - t)
for name, ts in times.items():
    print(f"{sys.argv[1]} {name}: median {statistics.median(ts)*1000:.0f} ms/step, {B*R/statistics.median(ts):.0f} response tok/s (n={len(ts)})")
