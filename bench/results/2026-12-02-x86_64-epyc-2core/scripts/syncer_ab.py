"""The syncer giving a large object's place back once its bytes are written (before its
fsync), against holding it through the fsync, in one process, alternating, 4 runs each.
Needs syncer-release-after-write.patch applied (it adds _Syncer.submit_write); run from the
repository root.
"""
import sys, time, os, shutil, resource, tempfile
from pathlib import Path
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from store_bench import write_bf16_safetensors
from bgit.store import Store, files
tmp = Path(tempfile.mkdtemp(dir="/tmp"))
src = tmp / "m.safetensors"
write_bf16_safetensors(src, 1 << 30)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
new = files._Syncer.submit_write
def old(self, buffers, write, commit):  # the slot held through the fsync, as before
    self._slots.acquire()
    try:
        f = self._pool.submit(lambda: commit(write(buffers)))
    except BaseException:
        self._slots.release(); raise
    f.add_done_callback(lambda _: self._slots.release())
    return f
for i in range(8):
    mode = ["release-after-write", "hold-through-fsync"][i % 2]
    files._Syncer.submit_write = new if i % 2 == 0 else old
    root = tmp / f"s{i}"
    st = Store.init(root)
    os.sync()
    t, c = time.perf_counter(), cpu()
    m = st.store_file(src)
    w, cc = time.perf_counter() - t, cpu() - c
    print(mode, f"wall {w:.2f} s  {src.stat().st_size/w/1e6:.0f} MB/s  cpu {cc:.2f}", flush=True)
    shutil.rmtree(root)
shutil.rmtree(tmp)
