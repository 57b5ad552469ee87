"""Multi-rank training on CPU: what 2 ranks cost against 1 for the same bake (same global batch).

    .venv/bin/python bench/multirank_bench.py [--quick] [--stims 32] [--tokens 64] [--epochs 2] [--keep]

One input.yml, one rollout: stim and rollout run once and their phases are copied into every
repository, so the rows differ only in training. Then ``bgit bake`` as 1 process
(micro_batch_size 4) and as 2 ranks through ``torchrun --standalone --nproc_per_node 2 -m
bgit.cli.main bake`` (micro_batch_size 2: the same global batch of 4), plain torch (DDP) and
DeepSpeed ZeRO-2 and ZeRO-3 (``DS_ACCELERATOR=cpu``, gloo). Per row: the bake's wall seconds
(launch to exit: imports, model load, training, commit), the train phase's seconds and
response tokens/s (bake.yml), and the adapter's max abs difference to the 1-process adapter.
torchrun gives each worker OMP_NUM_THREADS=1; the 1-process row uses torch's default threads
(one per core) and a second 1-process row one thread, to tell threads from ranks.

Default: the embedded SmolLM2-135M, LoRA r=16. ``--quick``: a ~1M-parameter random Llama, 8
stims of 16 tokens, seconds per row (proves the benchmark runs).
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

import yaml

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TOPICS = ["the weather", "cooking pasta", "the moon", "learning Python", "a good book", "running shoes",
          "the ocean", "city parks", "coffee", "trains", "music theory", "gardening", "chess", "rain",
          "mountains", "history of maps"]
ROWS = (  # label, launcher, micro_batch_size, BAKE.deepspeed, extra environment
    ("1 process", None, 4, None, {}),
    ("1 process, 1 thread", None, 4, None, {"OMP_NUM_THREADS": "1"}),
    ("2 ranks, DDP (torch)", TORCHRUN, 2, None, {}),
    ("2 ranks, DeepSpeed ZeRO-2", TORCHRUN, 2, {"zero_optimization": {"stage": 2}}, {}),
    ("2 ranks, DeepSpeed ZeRO-3", TORCHRUN, 2, {"zero_optimization": {"stage": 3}}, {}),
)


def run(cwd: Path, command: list[str], **extra_env: str) -> float:
    """Run ``command`` in ``cwd``; -> wall seconds. Exits with its stderr when it fails."""
    env = {**os.environ, **extra_env, "DS_ACCELERATOR": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}:\n{result.stderr[-4000:]}")
    return time.monotonic() - started


def bgit(*args: str) -> list[str]:
    return [sys.executable, "-m", "bgit", *args]


def write_config(root: Path, base: str, args, micro_batch_size: int, deepspeed: dict | None) -> None:
    stims = [f"Tell me something about {TOPICS[i % len(TOPICS)]} (question {i})." for i in range(args.stims)]
    bake = {"epochs": args.epochs, "micro_batch_size": micro_batch_size, "seed": 0,
            "optimizer": {"learning_rate": 1e-3}, "data": {"train_eval_split": 1.0},
            "model": {"baked_adapter_config": {"r": 16}}, "autocast": "off"}
    if deepspeed is not None:
        bake["deepspeed"] = deepspeed
    config = {"MODEL": {"base": base},
              "PROMPT": {"teacher": {"messages": [{"role": "system", "content": "You are a pirate. Answer in "
                                                   "pirate speak."}]}},
              "TARGET": {"name": "pirate", "max_tokens": args.tokens, "num_traj_per_stimulus": 1,
                         "generators": [{"type": "hardcoded", "stims": stims}]},
              "BAKE": bake}
    (root / "input.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def base_model(args, workdir: Path) -> str:
    """The model to bake on, made ready before any clock starts."""
    if args.quick:
        sys.path.insert(0, str(ROOT / "bench"))
        from gpu_check import TINY_MODEL, build_model_dir

        directory = workdir / "tiny-llama"
        directory.mkdir()
        build_model_dir(TINY_MODEL, directory, "cpu")
        return str(directory)
    from bgit.models import resolve_model

    resolve_model("smollm2-135m")  # converted once per machine
    return "smollm2-135m"


def adapter_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = (load_file(str(p / "adapter" / "adapter_model.safetensors")) for p in (a, b))
    return max(float((x[k] - y[k]).abs().max()) for k in x)


def bake_row(workdir: Path, base: str, args, rollout_repo: Path, row) -> dict:
    label, launcher, micro_batch_size, deepspeed, env = row
    repo = workdir / "".join(c if c.isalnum() else "-" for c in label)
    run(workdir, bgit("init", str(repo)))
    write_config(repo, base, args, micro_batch_size, deepspeed)
    for phase in ("stim", "rollout"):
        shutil.copytree(rollout_repo / ".git/bgit/phases" / phase, repo / ".git/bgit/phases" / phase)
    command = [*launcher, "-m", "bgit.cli.main", "bake"] if launcher else bgit("bake")
    wall = run(repo, command, **env)
    record = yaml.safe_load((repo / "bake.yml").read_text())
    train_seconds, tokens = record["timings"]["train"], record["tokens"]["train"]
    return {"label": label, "repo": str(repo), "micro_batch_size": micro_batch_size, "wall_s": round(wall, 1),
            "train_s": train_seconds, "train_tokens": tokens, "tokens_per_s": round(tokens / train_seconds, 1),
            "device": record["device"], "final_train_kl": record["metrics"]["final_train_kl"]}


def print_table(rows: list[dict]) -> None:
    alone = rows[0]
    print(f"| {'run (global batch 4)':<26} | micro-batch | {'device (bake.yml)':<38} | bake wall s | train s | "
          "train tok/s | vs 1 process | adapter max abs diff |")
    print(f"|{'-' * 28}|-------------|{'-' * 40}|-------------|---------|-------------|--------------|"
          "----------------------|")
    for r in rows:
        ratio = r["tokens_per_s"] / alone["tokens_per_s"]
        diff = "—" if r is alone else f"{r['adapter_max_abs_diff']:.2g}"
        print(f"| {r['label']:<26} | {r['micro_batch_size']:>11} | {r['device']:<38} | {r['wall_s']:>11.1f} | "
              f"{r['train_s']:>7.1f} | {r['tokens_per_s']:>11.1f} | {ratio:>11.2f}x | {diff:>20} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A ~1M-parameter random Llama, 8 stims: seconds.")
    parser.add_argument("--stims", type=int, help="Stims = training trajectories (default 32; quick 8).")
    parser.add_argument("--tokens", type=int, help="Response tokens per trajectory (default 64; quick 16).")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="Keep the repositories and print where.")
    parser.add_argument("--json", help="Also write the rows to this file.")
    args = parser.parse_args()
    args.stims = args.stims or (8 if args.quick else 32)
    args.tokens = args.tokens or (16 if args.quick else 64)

    workdir = Path(tempfile.mkdtemp(prefix="bgit-multirank-bench-"))
    try:
        base = base_model(args, workdir)
        rollout_repo = workdir / "rollout"
        run(workdir, bgit("init", str(rollout_repo)))
        write_config(rollout_repo, base, args, 4, None)
        rollout_s = run(rollout_repo, bgit("rollout", "--count"))
        rows = [bake_row(workdir, base, args, rollout_repo, row) for row in ROWS]
        for r in rows[1:]:
            r["adapter_max_abs_diff"] = adapter_diff(Path(rows[0]["repo"]), Path(r["repo"]))
        print(f"# {'quick: tiny random Llama' if args.quick else 'SmolLM2-135M'}, {args.stims} trajectories x "
              f"<= {args.tokens} tokens, {args.epochs} epochs, LoRA r=16, fp32; {platform.machine()}, "
              f"{os.cpu_count()} CPUs; stim + rollout once ({rollout_s:.1f}s), phases shared")
        print_table(rows)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    finally:
        if args.keep:
            print(f"repositories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
