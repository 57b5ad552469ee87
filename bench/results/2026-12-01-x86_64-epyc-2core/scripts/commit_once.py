import sys, time, os, shutil
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main")
from pathlib import Path
from store_bench import write_bf16_safetensors, timed
from bgit.store import Store
work = Path("/tmp/prof/w"); work.mkdir(exist_ok=True)
src = work / "m.safetensors"
if not src.exists():
    write_bf16_safetensors(src, 1 << 30)
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    shutil.rmtree(work / "s", ignore_errors=True)
    store = Store.init(work / "s")
    t = timed(lambda: store.store_file(src))
    print(f"commit {src.stat().st_size/1e6/t.wall:.1f} MB/s  cpu {t.cpu:.2f}s  {src.stat().st_size/1e6/t.cpu:.1f} MB/cpu-s", flush=True)
