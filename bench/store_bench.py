"""Benchmark the payload store against plain git and whole-file zstd.

    python bench/store_bench.py                 # 1 GiB bf16 safetensors + 200 MB JSONL
    python bench/store_bench.py --bf16-mb 64 --jsonl-mb 16    # quick run

Data is generated fresh in a temp dir each run (nothing is cached across runs). Every
method reads the same freshly written files (so all start from a warm page cache).
MB/cpu-s = bytes per CPU-second spent (all threads, plus child processes for git/zstd):
on a shared machine it shows the cost independent of how much CPU others leave us;
fsync waits and kernel write-back threads are not CPU of ours and are not in it.
commit = bgit store_file / `git add` + `git commit` / `zstd -3` ; checkout = bgit
materialise / `git checkout HEAD -- FILE` after deleting it / `zstd -d`. MB = 10**6 bytes.
"""

import argparse
import base64
import filecmp
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
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


def bench_bgit(src: Path, work: Path):
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
    shutil.rmtree(work / "bgit-store")
    return t_commit, t_checkout, stored


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

        print(f"cpus: {os.cpu_count()}   load average (1 min) at start: {os.getloadavg()[0]:.1f}   "
              f"MB = 1e6 bytes   data in {tmp}")
        header = (f"{'file':<18} {'size MB':>8}  {'method':<38} {'commit MB/s':>11} {'checkout MB/s':>13} "
                  f"{'stored/raw':>10} {'commit MB/cpu-s':>15} {'checkout MB/cpu-s':>17}")
        print(header)
        print("-" * len(header))
        for label, path in files:
            size = path.stat().st_size
            rows = [("bgit store", *bench_bgit(path, tmp))]
            if not args.no_git:
                rows.append(("plain git (add+commit / checkout)", *bench_git(path, tmp)))
            zlabel, *z = bench_zstd(path, tmp)
            rows.append((zlabel, *z))
            for method, t_c, t_d, stored in rows:
                mb = size / 1e6
                print(f"{label:<18} {mb:>8.1f}  {method:<38} {mb / t_c.wall:>11.1f} {mb / t_d.wall:>13.1f} "
                      f"{stored / size:>10.3f} {mb / t_c.cpu:>15.1f} {mb / t_d.cpu:>17.1f}")
            if not args.no_git:
                (_, bc, bd, _), (_, gc, gd, _) = rows[0], rows[1]
                print(f"{'':<18} {'':>8}  {'bgit speed-up over plain git':<38} {gc.wall / bc.wall:>10.1f}x "
                      f"{gd.wall / bd.wall:>12.1f}x {'':>10} {gc.cpu / bc.cpu:>14.1f}x {gd.cpu / bd.cpu:>16.1f}x")
        print(f"load average (1 min) at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
