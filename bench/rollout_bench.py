"""Rollout throughput on the embedded SmolLM2-135M: batched vs one stim at a time.

Both modes run the whole HF rollout (generation, the teacher's top-K rows, row
encoding) at temperature 1 with ``min_new_tokens = max_tokens``, so every trajectory has
exactly the same number of tokens and tokens/s compare like for like. The sequential
mode may run on a subset of the stims (``--single-stims``) to keep the run short; its
tokens/s is per-token, so the speed-up stays comparable.

    .venv/bin/python bench/rollout_bench.py                        # 64 stims x 128 tokens
    .venv/bin/python bench/rollout_bench.py --stims 16 --tokens 32 --batch-sizes 8,16
    .venv/bin/python bench/rollout_bench.py --example customer_service   # its 330-token teacher prompt
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def make_stims(count: int) -> list[dict]:
    from bgit.pipeline.stim import stim_id

    topics = ["the sea", "bread", "stars", "rivers", "chess", "music", "rain", "maps", "tea", "ships", "birds", "clocks"]
    asks = ["Tell me about {}.", "Why do people love {}?", "Write a short poem about {}.", "Explain {} to a child."]
    texts = [asks[i % len(asks)].format(topics[(i // len(asks)) % len(topics)]) + f" (#{i})" for i in range(count)]
    return [{"id": stim_id(t), "text": t, "generator": "bench"} for t in texts]


def example_prompt(name: str):
    import tempfile

    from bgit.config.examples import write_example
    from bgit.config.load import load_config

    with tempfile.TemporaryDirectory() as directory:
        return load_config(write_example(name, directory), root=directory).prompt


def timed_rollout(model, tokenizer, stims, prompt, target, batch_size):
    from bgit.pipeline.rollout import rollout

    started = time.perf_counter()
    rows = rollout(model, tokenizer, stims, prompt, target, seed=0, batch_size=batch_size, min_new_tokens=target.max_tokens)
    seconds = time.perf_counter() - started
    tokens = sum(len(row["response_ids"]) for row in rows)
    return tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stims", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per trajectory")
    parser.add_argument("--batch-sizes", default="16,32,64")
    parser.add_argument("--single-stims", type=int, default=16, help="stims run one at a time (0 = all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--example", help="take the teacher prompt of this shipped example (bgit init --example)")
    args = parser.parse_args()

    import torch

    from bgit.config.schema import PromptConfig, TargetConfig
    from bgit.models import load_model, resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(resolve_model(args.model), dtype=args.dtype)
    prompt = PromptConfig(teacher_messages=[{"role": "system", "content": "You are a pirate. Answer in pirate speak."}])
    if args.example:
        prompt = example_prompt(args.example)
    target = TargetConfig(max_tokens=args.tokens, temperature=1.0, top_k=20)
    stims = make_stims(args.stims)

    results = []
    single = stims[: args.single_stims] if args.single_stims else stims
    results.append(("one at a time", *timed_rollout(model, tokenizer, single, prompt, target, batch_size=1)))
    for batch_size in [int(b) for b in args.batch_sizes.split(",") if b]:
        results.append((f"batch {batch_size}", *timed_rollout(model, tokenizer, stims, prompt, target, batch_size)))

    base_rate = results[0][1] / results[0][2]
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"load={os.getloadavg()[0]:.1f} device={model.device} dtype={model.dtype} torch threads={torch.get_num_threads()}")
    print(f"teacher prompt: {args.example or 'one-line pirate'}, {args.tokens} new tokens per trajectory")
    print(f"{'mode':<15} {'stims':>6} {'tokens':>8} {'seconds':>9} {'tokens/s':>9} {'speed-up':>9}")
    for mode, tokens, seconds in results:
        count = len(single) if mode == "one at a time" else len(stims)
        rate = tokens / seconds
        print(f"{mode:<15} {count:>6} {tokens:>8} {seconds:>9.2f} {rate:>9.1f} {rate / base_rate:>8.2f}x")


if __name__ == "__main__":
    main()
