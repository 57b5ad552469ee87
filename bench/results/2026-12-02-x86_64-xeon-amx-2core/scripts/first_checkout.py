# bgit's commit + checkout of the store bench's 1 GiB bf16 file on tmpfs, in this process three
# times and in fresh processes twice; --fresh-first runs the fresh processes first (and this
# process twice). Is the slow first checkout a first-run effect or a property of the process?
# Run from the tree root: .venv/bin/python bench/results/.../scripts/first_checkout.py [--fresh-first]
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, "bench")
sys.path.insert(0, ".")
import store_bench as b  # noqa: E402

fresh_first = "--fresh-first" in sys.argv
with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
    tmp = Path(tmp)
    src = tmp / "model.safetensors"
    b.write_bf16_safetensors(src, 1 << 30)
    mb = src.stat().st_size / 1e6
    in_process = ("in-process run", lambda: b.bench_bgit(src, tmp), 2 if fresh_first else 3)
    fresh = ("fresh process", lambda: b.bench_bgit_tree(Path(".").resolve(), src, tmp), 2)
    for label, run, times in ([fresh, in_process] if fresh_first else [in_process, fresh]):
        for i in range(times):
            c, d, _ = run()
            print(f"{label} {i}: commit {mb / c.wall:.0f} MB/s ({c.cpu:.2f} cpu-s), "
                  f"checkout {mb / d.wall:.0f} MB/s ({d.cpu:.2f} cpu-s)", flush=True)
