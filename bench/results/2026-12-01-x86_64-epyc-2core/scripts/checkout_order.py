import sys, shutil, time
sys.path.insert(0, "/work/main/bench"); sys.path.insert(0, "/work/main")
from pathlib import Path
from store_bench import timed
from bgit.store import Store, kernels
work = Path("/tmp/prof/w"); src = work / "m.safetensors"
shutil.rmtree(work / "s", ignore_errors=True)
store = Store.init(work / "s")
m = store.store_file(src)
dest = work / "out.safetensors"
MODES = sys.argv[1].split(",")
for rep in range(3):
    for mode in MODES:
        kernels.KERNELS = mode
        t = timed(lambda: store.materialise(m, dest))
        dest.unlink()
        print(f"{mode:6s} checkout {src.stat().st_size/1e6/t.wall:.1f} MB/s cpu {t.cpu:.2f}", flush=True)
