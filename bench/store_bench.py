"""Benchmark the payload store against plain git and whole-file zstd.

    python bench/store_bench.py                 # 1 GiB bf16 safetensors + 200 MB JSONL
    python bench/store_bench.py --bf16-mb 64 --jsonl-mb 16    # quick run
    python bench/store_bench.py --baseline 56c7710 --repeat 5 --no-git   # before/after

With --baseline REV, bgit as of git revision REV (extracted with `git archive`) runs in the
same invocation, alternating with this tree's bgit, --repeat times each; each run is a
fresh process and a fresh store. Reported: the minimum wall time and the minimum and median
CPU seconds of each side (on a shared machine the minimum wall time is the run least
disturbed by others, and CPU seconds show the cost whatever CPU others leave us).
The bf16 file's first tensor piece is also split into the byte streams the codecs use and
each stream's entropy and zstd ratio printed.

Data is generated fresh in a temp dir each run (nothing is cached across runs). Every
method reads the same freshly written files (so all start from a warm page cache).
MB/cpu-s = bytes per CPU-second spent (all threads, plus child processes for git/zstd):
on a shared machine it shows the cost independent of how much CPU others leave us;
fsync waits and kernel write-back threads are not CPU of ours and are not in it.
commit = bgit store_file / `git add` + `git commit` / `zstd -3` ; checkout = bgit
materialise / `git checkout HEAD -- FILE` after deleting it / `zstd -d`. MB = 10**6 bytes.
"I/O only" is the floor under bgit's rows on this disk: the same reads and writes with no
decoding, hashing or compressing (io_floor). Its stored/raw is bgit's, as it moves those
bytes. At the end, one bf16 piece's steps are timed one by one on one core, so the CPU
budget of a commit and a checkout can be added up.
"""

import argparse
import base64
import filecmp
import json
import mmap
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bgit.store import Store  # noqa: E402


def write_bf16_safetensors(path: Path, total_bytes: int, n_tensors: int = 8, seed: int = 0):
    """LLM-like weights: 0.02 * randn rounded to bf16, in n_tensors [rows, 4096] tensors."""
    cols = 4096
    rows = max(1, total_bytes // (2 * cols * n_tensors))
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for i in range(n_tensors):
        nbytes = rows * cols * 2
        header[f"model.layers.{i}.mlp.weight"] = {"dtype": "BF16", "shape": [rows, cols],
                                                  "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for _ in range(n_tensors):
            for r in range(0, rows, 1024):
                x = 0.02 * rng.standard_normal((min(1024, rows - r), cols), dtype=np.float32)
                u = x.view(np.uint32)
                f.write(((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes())


def write_rollout_jsonl(path: Path, total_bytes: int, seed: int = 0, k: int = 20):
    rng = np.random.default_rng(seed)
    words = np.array("the a model answer is of to and in that it for baked prompt we you".split())
    written, i = 0, 0
    with open(path, "w") as f:
        while written < total_bytes:
            t = int(rng.integers(16, 128))
            row = json.dumps({
                "stim_id": f"{i // 4:012x}", "stim": " ".join(rng.choice(words, 12)), "traj": i % 4,
                "response": " ".join(rng.choice(words, t)),
                "response_ids": rng.integers(0, 49152, t).tolist(), "k": k,
                "topk_ids": base64.b64encode(rng.integers(0, 49152, t * k).astype("<i4").tobytes()).decode(),
                "topk_logprobs": base64.b64encode(np.sort(-rng.exponential(2, t * k)).astype("<f4").tobytes()).decode(),
                "tail_logprob": base64.b64encode((-rng.exponential(5, t)).astype("<f4").tobytes()).decode(),
            }, sort_keys=True) + "\n"
            f.write(row)
            written += len(row)
            i += 1


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Timing:
    """Wall seconds and CPU seconds (this process's threads + finished child processes)."""

    def __init__(self, wall: float, cpu: float):
        self.wall, self.cpu = wall, cpu


def timed(fn) -> Timing:
    c, t = _cpu_seconds(), time.perf_counter()
    fn()
    return Timing(time.perf_counter() - t, _cpu_seconds() - c)


def run(cmd, cwd=None):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_bgit(src: Path, work: Path, floor: list | None = None):
    """bgit's commit and checkout of ``src``; with ``floor`` (a list), also the I/O alone
    (io_floor) on the store just written, appended to it."""
    store = Store.init(work / "bgit-store")
    manifest = None

    def commit():
        nonlocal manifest
        manifest = store.store_file(src)
    t_commit = timed(commit)
    dest = work / "bgit-out" / src.name
    t_checkout = timed(lambda: store.materialise(manifest, dest))
    assert filecmp.cmp(dest, src, shallow=False), "materialised file differs"
    dest.unlink()
    stored = store.stored_bytes()
    if floor is not None:
        floor.extend(io_floor(src, [store.object_path(oid) for oid in store.iter_object_ids()], stored, work))
    shutil.rmtree(work / "bgit-store")
    return t_commit, t_checkout, stored


IO_BLOCK = 16 << 20


def _write_durably(path: Path, source: memoryview, nbytes: int) -> None:
    """``nbytes`` of ``source`` (a page-aligned map) to a new file with bgit's writer for big
    files, then fsync: O_DIRECT, or buffered where the filesystem refuses it (materialise's
    fallback)."""
    from bgit.store import writers

    try:
        writer = writers.DirectWriter(path)
    except OSError:
        writer = writers.BufferedWriter(path)
    try:
        for i in range(0, nbytes, IO_BLOCK):
            writer.write(source[i:min(i + IO_BLOCK, nbytes)])
        writer.finish()
    finally:
        writer.close()


def _read_all(paths) -> None:
    """Read the object files as materialise does: bgit's ObjectReader (O_DIRECT for big
    files), on as many threads as it decodes with."""
    from bgit.store.files import WORKERS
    from bgit.store.reads import ObjectReader

    reader = ObjectReader()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda path: len(reader.read(path, 1 << 40)), paths))


def io_floor(src: Path, objects: list, stored: int, work: Path):
    """The I/O of bgit's commit and checkout without their computing: commit = the
    ``stored`` bytes written to one new file and fsynced (bgit writes them as many files);
    checkout = the store's object files read by bgit's reader on its threads while the raw
    bytes are written to a new file and fsynced, at once (bgit overlaps them too); bgit's
    writer in both. No bgit configuration can beat these wall times on this disk; in a
    page-cache-only filesystem (tmpfs) they are memory copies."""
    with open(src, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    source = memoryview(mapped)
    try:
        t_commit = timed(lambda: _write_durably(work / "floor-commit.bin", source, stored))
        reader = threading.Thread(target=_read_all, args=(objects,))

        def checkout():
            reader.start()
            _write_durably(work / "floor-checkout.bin", source, len(source))
            reader.join()
        t_checkout = timed(checkout)
    finally:
        source.release()
        mapped.close()
    for name in ("floor-commit.bin", "floor-checkout.bin"):
        (work / name).unlink()
    return t_commit, t_checkout, stored


def bench_bgit_tree(tree: Path, src: Path, work: Path):
    """bench_bgit in a fresh process that imports bgit from ``tree``."""
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import bgit.store; assert bgit.__file__.startswith(sys.argv[1]), bgit.__file__; "
            "sys.path.insert(1, sys.argv[4]); import store_bench as b; "
            "c, d, s = b.bench_bgit(Path(sys.argv[2]), Path(sys.argv[3])); "
            "print(json.dumps([c.wall, c.cpu, d.wall, d.cpu, s]))")
    out = subprocess.run([sys.executable, "-c", code, str(tree), str(src), str(work), str(Path(__file__).parent)],
                         check=True, capture_output=True, text=True).stdout
    cw, cc, dw, dc, stored = json.loads(out.splitlines()[-1])
    return Timing(cw, cc), Timing(dw, dc), stored


def compare_trees(trees: dict, files, work: Path, repeat: int) -> None:
    """Alternate the trees' bgit on each file, each first in every other round; min wall,
    min and median CPU seconds."""
    print(f"\nbefore/after, {repeat} alternating runs each, ABBA (MB/s from the minimum wall time; "
          "CPU seconds min / median)")
    header = (f"{'file':<18} {'bgit':<24} {'commit MB/s':>11} {'commit cpu-s':>15} {'checkout MB/s':>13} "
              f"{'checkout cpu-s':>15} {'stored/raw':>10}")
    print(header)
    print("-" * len(header))
    for label, path in files:
        runs = {name: [] for name in trees}
        for i in range(repeat):
            # ABBA: on a disk the run right after another waits on its write-back, so each
            # tree goes first in half the rounds
            for name, tree in (list(trees.items()) if i % 2 == 0 else reversed(trees.items())):
                runs[name].append(bench_bgit_tree(tree, path, work))
        mb = path.stat().st_size / 1e6
        for name, rs in runs.items():
            cw, dw = min(r[0].wall for r in rs), min(r[1].wall for r in rs)
            cc, dc = sorted(r[0].cpu for r in rs), sorted(r[1].cpu for r in rs)
            print(f"{label:<18} {name:<24} {mb / cw:>11.1f} {cc[0]:>7.2f} / {cc[len(cc) // 2]:<5.2f} "
                  f"{mb / dw:>13.1f} {dc[0]:>7.2f} / {dc[len(dc) // 2]:<5.2f} {rs[0][2] / path.stat().st_size:>10.4f}")
        for name, rs in runs.items():
            print(f"  {name}, each run in order: commit MB/s {' '.join(f'{mb / r[0].wall:.0f}' for r in rs)}; "
                  f"checkout MB/s {' '.join(f'{mb / r[1].wall:.0f}' for r in rs)}")


def extract_tree(rev: str, dest: Path) -> Path:
    repo = Path(__file__).resolve().parents[1]
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "bgit"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    if (dest / "bgit/store/_kernels.c").exists():  # built as pip builds this tree's
        build_kernels(dest)
    return dest


def build_kernels(tree: Path) -> None:
    """Build ``tree``'s C kernels in place, as this tree's setup.py declares them."""
    from setup import KERNELS  # this checkout's root is on sys.path (top of the file)
    from setuptools import Distribution

    cwd = os.getcwd()
    os.chdir(tree)
    try:
        dist = Distribution({"ext_modules": [KERNELS]})
        cmd = dist.get_command_obj("build_ext")
        cmd.inplace = True
        dist.run_command("build_ext")
    finally:
        os.chdir(cwd)


def step_speeds(path: Path) -> None:
    """MB/s on one core of each step bgit runs on a bf16 tensor piece, so the 2-core budget
    of commit and checkout can be added up (best of 5; the piece is in cache)."""
    import blake3
    from bgit.store import codecs, kernels, safetensors_split as st

    data = _first_bf16_piece(path)
    n = len(data)
    planes = codecs.split_planes(data, 4)
    split_frame = codecs._compressor(literals=True).compress(planes)
    split_object = codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_ZSTD_SPLIT, 2, 4, n) + split_frame
    mode = int(np.bincount(np.frombuffer(data, "<u2") >> 12 & 7, minlength=8).argmax())
    p1, nibbles, signs, at, values = codecs.pack_planes(data, mode)
    p1_frame = codecs._compressor(literals=True).compress(p1)
    encoded = codecs.encode(data, 2, "BF16")
    codec = codecs.HEADER.unpack_from(encoded)[1]
    out = bytearray(n)
    steps = [("BLAKE3 (1 thread)", lambda: blake3.blake3(data).digest()),
             ("norm (sum of squares, float64), numpy", lambda: st.sum_squares_numpy(data, "BF16")),
             (f"norm, as bgit runs it ({kernels.KERNELS})", lambda: st.sum_squares(data, "BF16")),
             ("bit split at 4, numpy", lambda: codecs.split_planes_numpy(data, 4)),
             (f"bit split at 4 ({kernels.KERNELS})", lambda: codecs.split_planes(data, 4)),
             ("zstd literal coding, P1 + P2 (codec 2)", lambda: codecs._compressor(literals=True).compress(planes)),
             ("pack at 4, numpy", lambda: codecs.pack_planes_numpy(data, mode)),
             (f"pack at 4 ({kernels.KERNELS})", lambda: codecs.pack_planes(data, mode)),
             ("zstd literal coding, P1 only (codec 3)", lambda: codecs._compressor(literals=True).compress(p1)),
             ("encode as codec 2 (choice+split+zstd)", lambda: codec_2_encode(data)),
             (f"encode as bgit picks (codec {codec})", lambda: codecs.encode(data, 2, "BF16")),
             ("zstd decoding, P1 + P2 (codec 2)", lambda: codecs._decompressor().decompress(split_frame)),
             ("zstd decoding, P1 only (codec 3)", lambda: codecs._decompressor().decompress(p1_frame)),
             ("bit merge, numpy", lambda: codecs.merge_planes_numpy(planes, 4, out)),
             (f"bit merge ({kernels.KERNELS})", lambda: codecs.merge_planes(planes, 4, out)),
             ("unpack, numpy", lambda: codecs.unpack_planes_numpy(p1, nibbles, signs, mode, at, values)),
             (f"unpack ({kernels.KERNELS})", lambda: codecs.unpack_planes(p1, nibbles, signs, mode, at, values, out)),
             ("decode codec 2 (zstd + merge)", lambda: codecs.decode(split_object, "piece", n, out)),
             (f"decode as bgit picks (codec {codec})", lambda: codecs.decode(encoded, "piece", n, out))]
    print(f"\nsteps on one {n / 1e6:.1f} MB bf16 piece, one core, MB/s (best of 5):")
    for label, fn in steps:
        best = min(timed(fn).wall for _ in range(5))
        print(f"  {label:<38} {n / 1e6 / best:>8.0f}")


def codec_2_encode(data) -> bytes:
    """What encode did for a bf16 piece before codec 3."""
    from bgit.store import codecs

    shift = codecs.best_shift(codecs._sample(data), codecs.SPLIT_SHIFTS_TRIED["BF16"])
    return codecs._compressor(literals=True).compress(codecs.split_planes(data, shift))


def _first_bf16_piece(path: Path) -> bytes:
    from bgit.store import safetensors_split as st

    with open(path, "rb") as f:
        head = f.read(8 + int.from_bytes(f.read(8), "little"))
        f.seek(0)
        layout = st.parse_layout(f.read(len(head) + 8), path.stat().st_size)
        t = next(t for t in layout.tensors if t.dtype == "BF16")
        f.seek(layout.header_size + t.begin)
        return f.read(min(t.end - t.begin, st.PIECE_SIZE))


def stream_ratios(path: Path) -> None:
    """Entropy and zstd ratio of each byte stream of the first bf16 tensor piece."""
    from bgit.store import codecs
    import zstandard

    data = _first_bf16_piece(path)
    n = len(data) // 2
    level1 = zstandard.ZstdCompressor(level=codecs.ZSTD_LEVEL)
    literal = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(**codecs.SPLIT_PARAMS))

    def entropy(stream) -> float:
        counts = np.bincount(np.frombuffer(stream, dtype=np.uint8), minlength=256)
        p = counts[counts > 0] / len(stream)
        return float(-(p * np.log2(p)).sum())

    print(f"\nbyte streams of one {len(data) / 1e6:.1f} MB bf16 piece (the first): order-0 entropy / 8 "
          "and zstd's ratio; a stream's ratio x its share of the bytes adds up to the piece's")
    grouped = np.asarray(codecs.group_bytes(data, 2)).reshape(-1)
    rows = [("byte grouping (codec 1, level 1)", grouped, level1, ("low bytes", "high bytes")),
            ("byte grouping, literal-tuned zstd", grouped, literal, ("low bytes", "high bytes"))]
    chosen = codecs.best_shift(codecs._sample(data), codecs.SPLIT_SHIFTS_TRIED["BF16"])
    for shift in (7, 5, 4):
        rows.append((f"bit split at {shift} (codec 2){' <- shift chosen' if chosen == shift else ''}",
                     codecs.split_planes(data, shift), literal, ("P1", "P2")))
    for label, planes, cctx, names in rows:
        parts = [bytes(planes[:n]), bytes(planes[n:])]
        ratios = [len(cctx.compress(p)) / n for p in parts]
        cells = "  ".join(f"{nm} {entropy(p) / 8:.4f} / {r:.4f}" for nm, p, r in zip(names, parts, ratios))
        print(f"  {label:<38} {cells}   piece {sum(ratios) / 2:.4f}")
    encoded = codecs.encode(data, 2, "BF16")
    if codecs.HEADER.unpack_from(encoded)[1] == codecs.CODEC_ZSTD_PACK:
        frame_size, exceptions, _ = codecs.PACK_HEADER.unpack_from(encoded, codecs.HEADER_SIZE)
        rest = len(encoded) - frame_size - codecs.HEADER_SIZE
        print(f"  {'bit split at 4, P2 packed (codec 3)':<38} P1 {frame_size / n:.4f}, P2 {rest / n:.4f} raw "
              f"({exceptions} exceptions)   piece {len(encoded) / len(data):.4f}")
    u16 = np.frombuffer(data, dtype="<u2")
    counts = np.bincount(u16, minlength=1 << 16)
    p = counts[counts > 0] / n
    print(f"  order-0 entropy of whole bf16 values / 16: {float(-(p * np.log2(p)).sum()) / 16:.4f} (the floor for "
          "any coder that looks at one value at a time)")


def bench_git(src: Path, work: Path):
    repo = work / "git-repo"
    repo.mkdir()
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "b@x"], repo)
    run(["git", "config", "user.name", "bench"], repo)
    shutil.copyfile(src, repo / src.name)  # untimed: git needs the file in its work tree
    t_commit = timed(lambda: (run(["git", "add", src.name], repo),
                              run(["git", "commit", "-q", "-m", "add"], repo)))
    (repo / src.name).unlink()
    t_checkout = timed(lambda: run(["git", "checkout", "HEAD", "--", src.name], repo))
    stored = dir_bytes(repo / ".git" / "objects")
    shutil.rmtree(repo)
    return t_commit, t_checkout, stored


def bench_zstd(src: Path, work: Path):
    out, back = work / "whole.zst", work / "whole.out"
    if shutil.which("zstd"):
        label = "zstd -3 (CLI, 1 thread)"
        t_c = timed(lambda: run(["zstd", "-3", "-q", "-f", str(src), "-o", str(out)]))
        t_d = timed(lambda: run(["zstd", "-d", "-q", "-f", str(out), "-o", str(back)]))
    else:
        import zstandard
        label = "zstd -3 (python zstandard, 1 thread)"
        t_c = timed(lambda: out.write_bytes(zstandard.ZstdCompressor(level=3).compress(src.read_bytes())))
        t_d = timed(lambda: back.write_bytes(zstandard.ZstdDecompressor().decompress(out.read_bytes())))
    stored = out.stat().st_size
    out.unlink()
    back.unlink()
    return label, t_c, t_d, stored


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bf16-mb", type=float, default=1024, help="safetensors size in MiB (default 1024)")
    ap.add_argument("--jsonl-mb", type=float, default=200, help="JSONL size in MB (default 200)")
    ap.add_argument("--no-git", action="store_true", help="skip the plain-git comparison")
    ap.add_argument("--dir", default=None, help="parent of the temp dir (default: system temp)")
    ap.add_argument("--baseline", default=None, help="git revision whose bgit runs alongside (before/after)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side with --baseline (default 3)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bgit-store-bench-", dir=args.dir) as tmp:
        tmp = Path(tmp)
        files = []
        if args.bf16_mb > 0:
            p = tmp / "model.safetensors"
            write_bf16_safetensors(p, int(args.bf16_mb * (1 << 20)))
            files.append(("bf16 safetensors", p))
        if args.jsonl_mb > 0:
            p = tmp / "rollout.jsonl"
            write_rollout_jsonl(p, int(args.jsonl_mb * 1e6))
            files.append(("rollout JSONL", p))

        from bgit.store import kernels

        print(f"cpus: {os.cpu_count()}   load average (1 min) at start: {os.getloadavg()[0]:.1f}   "
              f"MB = 1e6 bytes   data in {tmp}   store kernels: {kernels.KERNELS}")
        header = (f"{'file':<18} {'size MB':>8}  {'method':<38} {'commit MB/s':>11} {'checkout MB/s':>13} "
                  f"{'stored/raw':>10} {'commit MB/cpu-s':>15} {'checkout MB/cpu-s':>17}")
        print(header)
        print("-" * len(header))
        for label, path in files:
            size = path.stat().st_size
            floor = []
            rows = [("bgit store", *bench_bgit(path, tmp, floor)),
                    ("I/O only (bgit's reads + writes)", *floor)]
            if not args.no_git:
                rows.append(("plain git (add+commit / checkout)", *bench_git(path, tmp)))
            zlabel, *z = bench_zstd(path, tmp)
            rows.append((zlabel, *z))
            for method, t_c, t_d, stored in rows:
                mb = size / 1e6
                print(f"{label:<18} {mb:>8.1f}  {method:<38} {mb / t_c.wall:>11.1f} {mb / t_d.wall:>13.1f} "
                      f"{stored / size:>10.3f} {mb / t_c.cpu:>15.1f} {mb / t_d.cpu:>17.1f}")
            if not args.no_git:
                (_, bc, bd, _), (_, gc, gd, _) = rows[0], rows[2]
                print(f"{'':<18} {'':>8}  {'bgit speed-up over plain git':<38} {gc.wall / bc.wall:>10.1f}x "
                      f"{gd.wall / bd.wall:>12.1f}x {'':>10} {gc.cpu / bc.cpu:>14.1f}x {gd.cpu / bd.cpu:>16.1f}x")
        if files and files[0][0] == "bf16 safetensors":
            stream_ratios(files[0][1])
            step_speeds(files[0][1])
        if args.baseline:
            trees = {f"as of {args.baseline}": extract_tree(args.baseline, tmp / "baseline"),
                     "this tree": Path(__file__).resolve().parents[1]}
            compare_trees(trees, files, tmp, args.repeat)
        print(f"load average (1 min) at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
