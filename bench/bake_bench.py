"""Headline benchmark: wall time and KL closure of the Yoda example bake on this machine.

    .venv/bin/python bench/bake_bench.py [--config examples/yoda.yml] [--threads N]

Runs exactly what a user runs — ``bgit init`` then ``bgit bake`` in a fresh repository, as a
subprocess — and reads the eval results the bake stored (KL on the held-out stims of the
example; closure = 1 - KL(prompted||baked) / KL(prompted||base)). The embedded model is
converted before the clock starts (a once-per-machine cost, reported separately).
Targets (issue 4): closure >= 0.8 within 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bgit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bgit {' '.join(args)} failed:\n{result.stderr}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "yoda.yml"))
    parser.add_argument("--keep", action="store_true", help="Keep the bake repository and print its path.")
    args = parser.parse_args()

    import torch

    from bgit.models import resolve_model

    started = time.monotonic()
    resolve_model("smollm2-135m")
    convert_seconds = time.monotonic() - started

    workdir = Path(tempfile.mkdtemp(prefix="bgit-bake-bench-"))
    repo = workdir / "yoda"
    bgit(workdir, "init", str(repo))
    shutil.copy(args.config, repo / "input.yml")
    for data in (Path(args.config).parent / "data").glob("*"):
        (repo / "data").mkdir(exist_ok=True)
        shutil.copy(data, repo / "data" / data.name)

    started = time.monotonic()
    bgit(repo, "bake", "-m", "bench")
    wall = time.monotonic() - started

    import yaml

    record = yaml.safe_load((repo / "bake.yml").read_text())
    log = json.loads(bgit(repo, "log", "--json", "-n", "1").stdout)[0]
    evaluation = log.get("eval") or {}

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"config: {args.config}")
    print(f"model conversion (once per machine, not in the wall time): {convert_seconds:.1f} s")
    print()
    print(f"{'phase':<16}{'seconds':>10}")
    for phase, seconds in record["timings"].items():
        print(f"{phase:<16}{seconds:>10.1f}")
    print(f"{'bake wall time':<16}{wall:>10.1f}")
    print()
    print(f"tokens: rollout {record['tokens']['rollout']}, trained {record['tokens']['train']}")
    print(f"final train KL {record['metrics']['final_train_kl']:.4f}, eval KL {record['metrics']['final_eval_kl']}")
    print(f"held-out stims: {evaluation.get('stims')}, tokens {evaluation.get('tokens')}")
    print(f"KL(prompted||base)  {evaluation.get('kl_prompted_base')}")
    print(f"KL(prompted||baked) {evaluation.get('kl_prompted_baked')}")
    print(f"KL closure          {evaluation.get('closure')}")
    print(f"target: closure >= 0.8 within 900 s -> "
          f"{'met' if (evaluation.get('closure') or 0) >= 0.8 and wall <= 900 else 'NOT met'}")
    if args.keep:
        print(f"repository: {repo}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
