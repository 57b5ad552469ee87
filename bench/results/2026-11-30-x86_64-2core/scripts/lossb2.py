import sys, time, torch
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/sw")
from bgit.train.loss import topk_bins, kl
from fused import TopkTailLogProbs
torch.set_num_threads(2)
# correctness in float64-ish: compare with reference on small
N, V, K = 6, 300, 20
x = (torch.randn(N, V) * 4).requires_grad_(True)
ids = torch.stack([torch.randperm(V)[:K] for _ in range(N)])
tl = torch.log_softmax(torch.randn(N, K + 1), -1)
w = torch.randn(N, K + 1)
ref, _ = topk_bins(x, ids, tl[:, :K], tl[:, K]); (ref * w).sum().backward(); gref = x.grad.clone(); x.grad = None
new = TopkTailLogProbs.apply(x, ids); (new * w).sum().backward()
print("max val diff", (ref - new).abs().max().item(), "max grad diff", (gref - x.grad).abs().max().item())
N, V = 240, 49152
for dt in (torch.float32, torch.bfloat16):
    x = torch.randn(N, V, dtype=dt, requires_grad=True)
    tk = torch.randint(0, V, (N, K)); tl = torch.log_softmax(torch.randn(N, K + 1), -1)
    def f(): kl(tl, TopkTailLogProbs.apply(x, tk)).mean().backward()
    f(); t = time.perf_counter()
    for _ in range(10): f()
    print(dt, f"{(time.perf_counter()-t)*100:.0f} ms fwd+bwd fused")
