"""fp32 GEMM speed at the trainer's shapes: torch.mm (MKL) vs oneDNN (torch mkldnn linear) vs numpy (OpenBLAS)."""
import time, numpy as np, torch
torch.set_num_threads(2)
shapes = [(276, 576, 1536), (276, 1536, 576), (276, 576, 576), (128, 576, 49152), (128, 49152, 576), (276, 16, 1536)]
def bench(f, n=30):
    f(); f()
    t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n
for m, k, n in shapes:
    a, b = torch.randn(m, k), torch.randn(k, n)
    an, bn = a.numpy(), b.numpy()
    flop = 2 * m * k * n
    t_mm = bench(lambda: torch.mm(a, b))
    w = b.t().contiguous()
    t_dnn = bench(lambda: torch._C._nn.mkldnn_linear(a.to_mkldnn(), w.to_mkldnn()).to_dense()) if hasattr(torch._C._nn, "mkldnn_linear") else float("nan")
    t_np = bench(lambda: an @ bn)
    print(f"{m}x{k}x{n}: torch.mm {flop/t_mm/1e9:.0f} GFLOP/s, onednn {flop/t_dnn/1e9:.0f}, numpy {flop/t_np/1e9:.0f}")
