"""Experiments behind bench/quality_bench.py's defaults: the same bakes, a cheaper eval.

    .venv/bin/python bench/quality_lab.py --cases pirate --set BAKE.epochs=3 --label "E12 3 epochs" \\
        --workdir /tmp/lab --log bench/results/<date>-quality-experiments/experiments.jsonl

Bakes exactly as quality_bench.py does (``bgit bake`` in a kept repository per case, so
unchanged stim/rollout phases are reused), then evaluates in-process with bgit eval's own
functions, caching what does not depend on the bake: each held-out message's response,
sampled from the prompted parent model with bgit eval's seed (seed + item index), and
KL(prompted||base) on it. Sampling token by token is most of eval's time on a CPU; what is
left per bake is two forward passes per message (prompted parent, baked student). The
closure is the one ``bgit eval --stims`` prints for the same commit (``--check`` runs both
and compares).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality_bench as qb  # noqa: E402  (this directory's bench, and this checkout's bgit)


def _item_key(bake, item, max_tokens: int, temperature: float, seed: int) -> str:
    text = json.dumps([bake.base_fingerprint, item.teacher_ids, item.student_ids, max_tokens, temperature, seed])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_eval(repo: Path, stims_file: Path, cache_file: Path, max_tokens: int | None = None) -> dict:
    """Per-target {closure, kl_prompted_base, kl_prompted_baked, tokens, stims} of HEAD on the file."""
    from bgit.evaluate import open_bake, read_stims_file
    from bgit.evaluate.closure import _kl, _load_eval_model, held_out_items
    from bgit.evaluate.forcing import forced_logits
    from bgit.repo import Repository

    bake = open_bake(Repository.open(repo), "HEAD")
    models = _load_eval_model(bake, None, "auto")
    items, _, _ = held_out_items(bake, models.tokenizer, read_stims_file(stims_file), 10_000,
                                 models.teacher_tokenizer)
    config = bake.config()
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    sums: dict[str, dict] = {}
    for n, item in enumerate(items):
        target = config.target(item.target)
        length = max_tokens or target.max_tokens
        key = _item_key(bake, item, length, target.temperature, n)
        if key not in cache:
            response = models.sample(item, length, target.temperature, n)
            base_kl = 0.0
            if response:
                item.response_ids = response
                with models.parent():
                    student = forced_logits(models.model, [item.student_ids], [response])
                base_kl = float(_kl(models.teacher_logits([item]), student).sum())
            cache[key] = [response, base_kl]
        item.response_ids, base_kl = cache[key]
        if not item.response_ids:
            continue
        teacher = models.teacher_logits([item])
        baked_kl = float(_kl(teacher, forced_logits(models.model, [item.student_ids], [item.response_ids])).sum())
        s = sums.setdefault(item.target, {"base": 0.0, "baked": 0.0, "tokens": 0, "stims": 0})
        s["base"] += base_kl
        s["baked"] += baked_kl
        s["tokens"] += len(item.response_ids)
        s["stims"] += 1
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps(cache))
    return {name: {"closure": 1 - s["baked"] / s["base"] if s["base"] else None,
                   "kl_prompted_base": s["base"] / max(s["tokens"], 1),
                   "kl_prompted_baked": s["baked"] / max(s["tokens"], 1), "tokens": s["tokens"],
                   "stims": s["stims"]} for name, s in sums.items()}


def bake_case(case: str, repo: Path, overrides: dict) -> dict:
    import yaml

    qb.prepare_repo(case, repo, overrides)
    cpu_before, started = qb.child_cpu_seconds(), time.monotonic()
    qb.bgit(repo, "bake", "-m", f"lab {case}", "--force")
    wall, cpu = time.monotonic() - started, qb.child_cpu_seconds() - cpu_before
    record = yaml.safe_load((repo / "bake.yml").read_text())
    metrics = record.get("metrics") or {}
    return {"case": case, "overrides": overrides, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "timings": record.get("timings"), "tokens": record.get("tokens"),
            "bake_eval_closure": metrics.get("eval_closure"), "final_eval_kl": metrics.get("final_eval_kl")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(qb.CASES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-max-tokens", type=int)
    parser.add_argument("--check", action="store_true", help="Also run bgit eval --stims and compare.")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    overrides = qb.parse_overrides(args.set)
    workdir = Path(args.workdir)
    for case in args.cases.split(","):
        load_before = os.getloadavg()[0]
        result = bake_case(case, workdir / case, overrides)
        started = time.monotonic()
        result["targets"] = cached_eval(workdir / case, qb.HELDOUT / f"{case}.jsonl",
                                        workdir / "eval-cache" / f"{case}.json", args.eval_max_tokens)
        result["eval_seconds"] = round(time.monotonic() - started, 1)
        if args.check:
            cli = json.loads(qb.bgit(workdir / case, "eval", "HEAD", "--stims", str(qb.HELDOUT / f"{case}.jsonl"),
                                     "--json", "--no-save",
                                     *(["--max-tokens", str(args.eval_max_tokens)] if args.eval_max_tokens else [])
                                     ).stdout)
            result["check_bgit_eval"] = {name: sums["closure"] for name, sums in cli["targets"].items()}
        result.update(label=args.label, threads=args.threads, load_before=round(load_before, 2),
                      load_after=round(os.getloadavg()[0], 2), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        closures = ", ".join(f"{name} {t['closure']:.3f}" for name, t in result["targets"].items())
        print(f"{args.label} | {case}: closure {closures} | wall {result['wall_s']} s, cpu {result['cpu_s']} s, "
              f"timings {result['timings']}", flush=True)
        with open(args.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
