"""fp32 products as the trainer runs them: F.linear (x @ W.T), its input gradient (g @ W);
torch (MKL) against numpy (OpenBLAS) on the same arrays, 2 threads each."""
import time, numpy as np, torch
import torch.nn.functional as F
torch.set_num_threads(2)
def bench(f, n=40):
    f(); f()
    best = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n): f()
        best.append((time.perf_counter() - t) / n)
    return min(best)
for m, inp, out in [(276, 576, 1536), (276, 1536, 576), (276, 576, 576), (276, 576, 192), (128, 576, 49152)]:
    x, W, g = torch.randn(m, inp), torch.randn(out, inp), torch.randn(m, out)
    xn, Wn, gn = x.numpy(), W.numpy(), g.numpy()
    flop = 2 * m * inp * out
    f1 = bench(lambda: F.linear(x, W)); n1 = bench(lambda: xn @ Wn.T)
    f2 = bench(lambda: g @ W); n2 = bench(lambda: gn @ Wn)
    print(f"{m} x {inp}->{out}: forward torch {flop/f1/1e9:.0f} numpy {flop/n1/1e9:.0f} GFLOP/s | input grad torch {flop/f2/1e9:.0f} numpy {flop/n2/1e9:.0f}")
