import sys, time
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main")
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from store_bench import _first_bf16_piece
from bgit.store import codecs, kernels
data = _first_bf16_piece(Path("/tmp/prof/w/m.safetensors"))
enc = codecs.encode(data, 2, "BF16")
n = len(data)
outs = [bytearray(n) for _ in range(4)]
def job(i):
    codecs.decode(enc, "x", n, outs[i % 4])
for threads in (1, 2):
    for mode in ("c", "numpy", "c", "numpy"):
        kernels.KERNELS = mode
        with ThreadPoolExecutor(threads) as pool:
            t = time.perf_counter(); list(pool.map(job, range(32))); d = time.perf_counter() - t
        print(f"threads {threads} {mode:6s} decode {32*n/d/1e6:7.0f} MB/s")
