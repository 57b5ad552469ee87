"""Cost of the top-K loss (forward + backward of the K+tail bins) at K=20 and K=100 on one
micro-batch's logits (128 response tokens x SmolLM2's 49,152), alternating, 2 threads."""
import time, torch
from bgit.train.loss import topk_bins, kl
torch.set_num_threads(2)
N, V = 128, 49152
g = torch.Generator().manual_seed(0)
base = torch.randn(N, V, generator=g)
def run(k):
    logits = base.clone().requires_grad_(True)
    ids = torch.topk(base + torch.randn(N, V, generator=g), k, dim=-1).indices
    lp = torch.log_softmax(torch.randn(N, k, generator=g), -1) - 0.2
    tail = torch.full((N,), -1.7)
    t = time.perf_counter()
    logq, logp = topk_bins(logits, ids, lp, tail)
    kl(logp, logq).sum().backward()
    return time.perf_counter() - t
for k in (20, 100): run(k)
res = {20: [], 100: []}
for _ in range(40):
    for k in (20, 100): res[k].append(run(k))
for k, v in res.items(): print(f"K={k}: min {min(v)*1000:.1f} ms, median {sorted(v)[len(v)//2]*1000:.1f} ms per micro-batch of {N} tokens (40 alternating runs)")
