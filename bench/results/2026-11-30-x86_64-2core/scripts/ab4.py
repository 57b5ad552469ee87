"""Interleaved: autocast (fp32 weights) vs frozen linear weights pre-cast to bf16, each with sdpa / fp32 attention."""
import os, sys, time, statistics, torch
sys.path.insert(0, "/work/main")
from peft import LoraConfig, get_peft_model
from bgit.models import load_model, resolve_model
from bgit.train.loss import topk_bins, kl
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
torch.set_num_threads(2)
def sdpa_fp32(module, query, key, value, attention_mask, **kw):
    with torch.autocast("cpu", enabled=False):
        out, w = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kw)
    return out.to(query.dtype), w
AttentionInterface.register("sdpa_fp32", sdpa_fp32)
model, tok = load_model(resolve_model("smollm2-135m"), dtype="float32")
pm = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")); pm.eval()
bases = [m.base_layer for m in pm.modules() if hasattr(m, "base_layer") and isinstance(m.base_layer, torch.nn.Linear)]
fp32w = [b.weight.data for b in bases]; bf16w = [w.to(torch.bfloat16) for w in fp32w]
B, L, R, K = 4, int(os.environ.get("L", 80)), 60, 20
ids = torch.randint(0, 49000, (B, L)); mask = torch.ones_like(ids)
keep = torch.zeros_like(ids, dtype=torch.bool); keep[:, L - R:] = True
tk = torch.randint(0, 49000, (B * R, K)); tl = torch.log_softmax(torch.randn(B * R, K + 1), -1)
opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-6)
def setup(precast, attn):
    for b, w32, w16 in zip(bases, fp32w, bf16w): b.weight.data = w16 if precast else w32
    model.set_attn_implementation(attn)
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = pm(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep).logits.reshape(-1, 49152)
        logq, logp = topk_bins(logits, tk, tl[:, :K], tl[:, K]); loss = kl(logp, logq).mean()
    loss.backward(); opt.step(); opt.zero_grad()
    return float(loss)
configs = [(p, a) for p in (False, True) for a in ("sdpa", "sdpa_fp32")]
times = {c: [] for c in configs}; losses = {}
for rnd in range(int(sys.argv[1]) + 1):
    for c in configs:
        setup(*c); t = time.perf_counter(); losses[c] = step()
        if rnd: times[c].append(time.perf_counter() - t)
for c, ts in times.items():
    print(f"L={L} precast={c[0]} attn={c[1]}: {statistics.median(ts)*1000:.0f} ms/step, {B*R/statistics.median(ts):.0f} tok/s, loss {losses[c]:.6f}")
