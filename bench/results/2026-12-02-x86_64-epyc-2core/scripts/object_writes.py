"""What bgit's commit writes cost on this disk, without its computing: 64 objects of 11 MB
(random bytes) written as bgit writes store objects (O_DIRECT temp file, fsync, rename), on
1, 2, 4 and 8 threads, then the same bytes as one file (bgit's DirectWriter, one fsync).
Run from the repository root: .venv/bin/python bench/results/2026-12-02-x86_64-epyc-2core/scripts/object_writes.py
"""
import sys, time, os, shutil, tempfile, numpy as np
from pathlib import Path
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
from concurrent.futures import ThreadPoolExecutor
from bgit.store import Store
from bgit.store import writers
tmp = Path(tempfile.mkdtemp(dir="/tmp"))
data = [np.random.default_rng(i).integers(0, 255, 11_000_000, dtype=np.uint8) for i in range(4)]
for threads in [1, 2, 4, 8, 4, 2]:
    st = Store.init(tmp / f"s{threads}")
    os.sync()
    t = time.perf_counter()
    def one(i):
        p = st.object_path(f"{i:064x}"); p.parent.mkdir(exist_ok=True)
        st._commit_tmp(st._write_tmp((data[i % 4],)), p)
    with ThreadPoolExecutor(threads) as ex: list(ex.map(one, range(64)))
    w = time.perf_counter() - t
    print(threads, "threads", f"{w:.2f} s  {64*11/w:.0f} MB/s written", flush=True)
    shutil.rmtree(tmp / f"s{threads}")
# one big file, sequential
t = time.perf_counter()
w = writers.DirectWriter(tmp / "big")
for i in range(64): w.write(data[i % 4])
w.finish(); w.close()
print("one file", f"{64*11/(time.perf_counter()-t):.0f} MB/s")
shutil.rmtree(tmp)
