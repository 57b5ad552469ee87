# The other order: a fresh process first, right after the 1 GiB file is written, then in-process.
import sys, tempfile
from pathlib import Path
sys.path.insert(0, "bench"); sys.path.insert(0, ".")
import store_bench as b
with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
    tmp = Path(tmp); src = tmp / "model.safetensors"
    b.write_bf16_safetensors(src, 1 << 30)
    mb = src.stat().st_size / 1e6
    for i in range(2):
        c, d, s = b.bench_bgit_tree(Path(".").resolve(), src, tmp)
        print(f"fresh process {i}: commit {mb / c.wall:.0f} MB/s ({c.cpu:.2f} cpu-s), checkout {mb / d.wall:.0f} MB/s ({d.cpu:.2f} cpu-s)", flush=True)
    for i in range(2):
        c, d, s = b.bench_bgit(src, tmp)
        print(f"in-process run {i}: commit {mb / c.wall:.0f} MB/s ({c.cpu:.2f} cpu-s), checkout {mb / d.wall:.0f} MB/s ({d.cpu:.2f} cpu-s)", flush=True)
