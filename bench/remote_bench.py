"""Push and clone+checkout throughput of a large bf16 adapter, against a plain copy.

    .venv/bin/python bench/remote_bench.py [--mb 500] [--tensors 400]

For a directory remote (plain copy: ``cp``) and S3 on a local moto server (plain copy:
boto3 ``upload_file``): first push, re-push after 10% of the tensors changed, and
clone + checkout. Throughput is the adapter's size over wall time. Targets: first push
>= 0.8x the plain copy; re-push >= 5x faster than the first push.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from remote_helpers import MotoS3, bf16_like, write_safetensors  # noqa: E402

from bgit.remote import add_remote, clone, push  # noqa: E402
from bgit.repo import Repository  # noqa: E402

ADAPTER = "adapter/adapter_model.safetensors"


def adapter(total_mb: int, count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    per = total_mb * 1_000_000 // 2 // count  # bf16 elements per tensor
    rank = 16
    return {f"base_model.model.layers.{i // 4}.mlp.m{i % 4}.lora_{'AB'[i % 2]}.weight":
            bf16_like(rng, (rank, per // rank)) for i in range(count)}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--tensors", type=int, default=400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bgit-remote-bench-"))
    moto = MotoS3()
    os.environ.update(moto.env)
    moto.create_bucket("bench")
    rows = []
    try:
        repo = Repository.init(work / "a")
        tensors = adapter(args.mb, args.tensors, 0)
        (repo.root / "adapter").mkdir()
        write_safetensors(repo.root / ADAPTER, tensors)
        size = (repo.root / ADAPTER).stat().st_size
        add_s, _ = timed(lambda: (repo.add(all=True), repo.commit("first bake")))
        print(f"adapter: {size / 1e6:.0f} MB, {len(tensors)} bf16 tensors; bgit add+commit {add_s:.1f} s",
              flush=True)

        cp_s, _ = timed(lambda: subprocess.run(["cp", str(repo.root / ADAPTER), str(work / "copy")], check=True))
        # push makes each object durable (fsync) before it moves refs; cp alone leaves the
        # bytes in the page cache. This row is the durable plain copy, for reference.
        cp_sync_s, _ = timed(lambda: subprocess.run(
            ["sh", "-c", f"cp {repo.root / ADAPTER} {work / 'copy2'} && sync {work / 'copy2'}"], check=True))
        import boto3
        s3 = boto3.client("s3", endpoint_url=moto.endpoint)
        up_s, _ = timed(lambda: s3.upload_file(str(repo.root / ADAPTER), "bench", "plain/adapter"))

        targets = {"directory": (str(work / "origin.git"), None, cp_s, "cp"),
                   "s3 (moto)": (str(work / "s3origin.git"), "s3://bench/bgit", up_s, "boto3 upload_file")}
        for name, (url, store, plain_s, plain) in targets.items():
            add_remote(repo.git, name.split()[0], url, store)
        first = {}
        for name, (url, store, plain_s, plain) in targets.items():
            first[name], result = timed(lambda: push(repo, name.split()[0]))
            rows.append((name, f"plain copy ({plain})", plain_s, size))
            if name == "directory":
                rows.append((name, "plain copy (cp + sync)", cp_sync_s, size))
            rows.append((name, "bgit push (first)", first[name], size))
            print(f"{name}: pushed {result.transfer.objects} objects, "
                  f"{result.transfer.wire_bytes / 1e6:.0f} MB on the wire", flush=True)

        rng = np.random.default_rng(1)
        names = sorted(tensors)
        for i in rng.choice(len(names), len(names) // 10, replace=False):
            tensors[names[i]] = tensors[names[i]] ^ np.uint16(1)
        write_safetensors(repo.root / ADAPTER, tensors)
        repo.add(all=True)
        repo.commit("retrain 10% of the tensors")
        for name, (url, store, plain_s, plain) in targets.items():
            again, result = timed(lambda: push(repo, name.split()[0]))
            rows.append((name, "bgit push (10% changed)", again, size))
            print(f"{name}: re-push sent {result.transfer.objects} objects "
                  f"({result.transfer.wire_bytes / 1e6:.0f} MB); {first[name] / again:.1f}x faster "
                  f"than the first push", flush=True)
        for name, (url, store, plain_s, plain) in targets.items():
            dest = work / f"clone-{name.split()[0]}"
            took, cloned = timed(lambda: clone(url, dest, store))
            assert (cloned.root / ADAPTER).read_bytes() == (repo.root / ADAPTER).read_bytes()
            rows.append((name, "bgit clone + checkout", took, size))
            shutil.rmtree(dest)

        print(f"\n{'remote':<11} {'operation':<32} {'seconds':>8} {'MB/s':>8} {'vs plain':>9}")
        plain_of = {name: t[2] for name, t in targets.items()}
        for name, op, seconds, nbytes in rows:
            ratio = plain_of[name] / seconds
            print(f"{name:<11} {op:<32} {seconds:8.2f} {nbytes / 1e6 / seconds:8.0f} {ratio:8.2f}x")
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
