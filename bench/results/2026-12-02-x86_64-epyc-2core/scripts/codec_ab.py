"""Codec 3 against codec 2 inside one process on the same 1 GiB bf16 file: store_file into a
fresh store, alternating (codec 2 forced by setting codecs.PACK_SHIFT to a shift never
chosen), 4 runs each. Run from the repository root with the tree of the codec 3 commit.
"""
import sys, time, os, shutil, resource, tempfile
from pathlib import Path
ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from store_bench import write_bf16_safetensors
from bgit.store import Store, codecs
tmp = Path(tempfile.mkdtemp(dir="/tmp"))
src = tmp / "m.safetensors"
write_bf16_safetensors(src, 1 << 30)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
orig = codecs.PACK_SHIFT
for i in range(8):
    mode = ["codec3", "codec2"][i % 2]
    codecs.PACK_SHIFT = orig if mode == "codec3" else 99
    root = tmp / f"s{i}"
    st = Store.init(root)
    os.sync()
    t, c = time.perf_counter(), cpu()
    m = st.store_file(src)
    w, cc = time.perf_counter() - t, cpu() - c
    print(mode, f"wall {w:.2f} s  {src.stat().st_size/w/1e6:.0f} MB/s  cpu {cc:.2f}", flush=True)
    shutil.rmtree(root)
shutil.rmtree(tmp)
