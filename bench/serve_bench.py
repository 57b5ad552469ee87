"""Serving benchmark: the prompted base model against the bake, on one `bgit serve` server.

    .venv/bin/python bench/serve_bench.py [--quick] [--repo PATH] [--ref main]

The customer-service example (examples/customer_service.yml) has a long teacher prompt; its
bake needs only the short student trigger. Both sides run on the same server (one model, the
adapter chosen per request): ``base`` with the teacher prompt, and the bake with its student
prompt. For each side and each number of concurrent clients (1 and 8) all user messages are
sent as streaming chat requests (greedy, a fixed number of tokens so that both sides generate
the same amount); the table shows prompt tokens per request, time to first token and
requests per second.

Without --repo the benchmark bakes the example first, shortened (its six hardcoded customer
messages only, one trajectory each, one epoch; --full-bake runs the example as written): the
bake's quality does not change what is measured here, only its prompt length does.
--quick: 8 messages of 8 tokens and a smaller bake, to check that everything works.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "customer_service.yml"

TOPICS = ["change my flight to tomorrow", "my bag did not arrive", "the price of a checked bag",
          "a refund for my cancelled trip", "bringing my guitar on board", "a four-hour delay",
          "choosing a window seat", "cancelling my booking"]
OPENERS = ["Hi, I need help with {}.", "Can you help me with {}?", "Hello! Question about {}.",
           "I'm writing about {}, what can I do?", "Quick one: {}.", "Good morning, it's about {}.",
           "Hey there, I have a problem with {}.", "Please advise on {}."]


def user_messages(count: int) -> list[str]:
    """``count`` distinct customer messages (8 topics x 8 phrasings, in a fixed order)."""
    messages = [opener.format(topic) for opener in OPENERS for topic in TOPICS]
    return messages[:count]


def bake_example(workdir: Path, quick: bool, full: bool) -> Path:
    import yaml

    repo = workdir / "acmeair"
    run_bgit(workdir, "init", str(repo))
    config = yaml.safe_load(EXAMPLE.read_text())
    if not full:
        target = config["TARGET"]
        target["generators"] = [g for g in target["generators"] if g["type"] == "hardcoded"]
        target.update(num_traj_per_stimulus=1, max_tokens=16 if quick else 48)
        config["BAKE"].update(epochs=1, micro_batch_size=2)
    (repo / "input.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.monotonic()
    run_bgit(repo, "bake", "-m", "Bake the AcmeAir support prompt (serve bench)")
    print(f"baked {repo} in {time.monotonic() - started:.0f} s ({'as written' if full else 'shortened'})")
    return repo


def run_bgit(cwd: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bgit {' '.join(args)} failed:\n{result.stderr}")


def prompts_of(repo: Path, ref: str) -> tuple[list[dict], list[dict]]:
    from bgit.evaluate import open_bake
    from bgit.repo import Repository

    config = open_bake(Repository.open(repo), ref).config()
    prompt = config.prompt_for(config.targets[0])
    return prompt.teacher_messages, prompt.student_messages


def one_request(client, model: str, messages: list[dict], max_tokens: int) -> dict:
    started = time.perf_counter()
    first, usage = None, None
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True})
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            usage = chunk.usage
    return {"ttft": first if first is not None else float("nan"), "latency": time.perf_counter() - started,
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}


def run_side(url: str, model: str, prompt: list[dict], users: list[str], clients: int, max_tokens: int) -> dict:
    import openai

    local = threading.local()

    def ask(user: str) -> dict:
        if not hasattr(local, "client"):
            local.client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=3600)
        return one_request(local.client, model, [*prompt, {"role": "user", "content": user}], max_tokens)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(ask, users))
    wall = time.perf_counter() - started
    ttfts = sorted(r["ttft"] for r in results)
    return {"requests": len(results), "wall": wall, "rps": len(results) / wall,
            "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in results),
            "completion_tokens": statistics.mean(r["completion_tokens"] for r in results),
            "ttft_p50": statistics.median(ttfts), "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))],
            "latency_p50": statistics.median(r["latency"] for r in results),
            "tokens_per_s": sum(r["completion_tokens"] for r in results) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 messages, 8 tokens each, a smaller bake.")
    parser.add_argument("--repo", type=Path, help="A repository with a bake of the example (else one is baked).")
    parser.add_argument("--ref", default="main", help="The bake to serve (default main).")
    parser.add_argument("--messages", type=int, help="User messages per run (default 64; --quick 8).")
    parser.add_argument("--max-tokens", type=int, help="Tokens generated per answer (default 32; --quick 8).")
    parser.add_argument("--clients", default="1,8", help="Concurrent clients to measure (default 1,8).")
    parser.add_argument("--full-bake", action="store_true", help="Bake the example as written (slow).")
    args = parser.parse_args()
    count = args.messages or (8 if args.quick else 64)
    max_tokens = args.max_tokens or (8 if args.quick else 32)
    levels = [int(c) for c in args.clients.split(",")]

    import torch

    from bgit.serve import RunningServer, build

    repo = args.repo or bake_example(Path(tempfile.mkdtemp(prefix="bgit-serve-bench-")), args.quick, args.full_bake)
    teacher, student = prompts_of(repo, args.ref)
    started = time.monotonic()
    app, backend = build(repo, [args.ref])
    server = RunningServer(app)
    print(f"server up in {time.monotonic() - started:.1f} s at {server.url}")
    users = user_messages(count)
    sides = [(f"base + teacher prompt ({len(teacher)} msg)", "base", teacher),
             (f"{args.ref} + student prompt ({len(student)} msg)", args.ref, student)]
    rows = []
    try:
        run_side(server.url, "base", teacher, users[:1], 1, 2)  # warm-up: first-call costs off the clock
        for clients in levels:
            for label, model, prompt in sides:
                rows.append((label, clients, run_side(server.url, model, prompt, users, clients, max_tokens)))
    finally:
        server.stop()
        backend.close()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model {backend.registry.base_model}")
    print(f"{count} user messages, {max_tokens} tokens per answer (greedy, EOS ignored), streaming\n")
    print(f"| side | clients | prompt tokens/req | TTFT p50 ms | TTFT p95 ms | latency p50 s | req/s | tokens/s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, clients, r in rows:
        print(f"| {label} | {clients} | {r['prompt_tokens']:.0f} | {1000 * r['ttft_p50']:.0f} | "
              f"{1000 * r['ttft_p95']:.0f} | {r['latency_p50']:.2f} | {r['rps']:.2f} | {r['tokens_per_s']:.1f} |")
    for clients in levels:
        base, bake = [r for _, c, r in rows if c == clients]
        print(f"\n{clients} client(s): the bake sends {base['prompt_tokens'] / bake['prompt_tokens']:.1f}x fewer "
              f"prompt tokens, first token {base['ttft_p50'] / bake['ttft_p50']:.2f}x sooner (p50), "
              f"{bake['rps'] / base['rps']:.2f}x the requests/s")
    print(f"\nengine: {backend.stats()}")
    if args.repo is None:
        print(f"repository kept at {repo}")


if __name__ == "__main__":
    main()
