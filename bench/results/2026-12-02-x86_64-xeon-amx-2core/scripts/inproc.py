# In one process: bgit's commit + checkout of the bench's 1 GiB bf16 file, three times in a row,
# on tmpfs; then the same once in a fresh process. Is the in-process first row's slow checkout
# a first-run effect or a property of the process?
import sys, tempfile, subprocess, time
from pathlib import Path
sys.path.insert(0, "bench"); sys.path.insert(0, ".")
import store_bench as b
with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
    tmp = Path(tmp); src = tmp / "model.safetensors"
    b.write_bf16_safetensors(src, 1 << 30)
    mb = src.stat().st_size / 1e6
    for i in range(3):
        c, d, s = b.bench_bgit(src, tmp)
        print(f"in-process run {i}: commit {mb / c.wall:.0f} MB/s ({c.cpu:.2f} cpu-s), checkout {mb / d.wall:.0f} MB/s ({d.cpu:.2f} cpu-s)", flush=True)
    for i in range(2):
        c, d, s = b.bench_bgit_tree(Path(".").resolve(), src, tmp)
        print(f"fresh process {i}: commit {mb / c.wall:.0f} MB/s ({c.cpu:.2f} cpu-s), checkout {mb / d.wall:.0f} MB/s ({d.cpu:.2f} cpu-s)", flush=True)
