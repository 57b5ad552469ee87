"""Bake quality: held-out KL closure and bake wall time of the configs users write.

    .venv/bin/python bench/quality_bench.py [--cases pirate,french,...] [--quick]

For each case it runs what a user runs — ``bgit init``, the shipped example as input.yml,
``bgit bake`` — in a fresh repository, then ``bgit eval --stims bench/data/heldout/<case>.jsonl``:
user messages written for this benchmark, never used in training and not drawn from any
file that supplied training stims (nor from bgit's bundled messages; a test checks both).
eval samples each held-out message's response from the prompted parent model (seeded) and
reports closure = 1 - KL(prompted||baked) / KL(prompted||base) per response token, per target,
and apart over the tokens up to and past the trained length (TARGET.max_tokens) when
``--eval-max-tokens`` samples longer responses.

Cases (examples/*.yml, unchanged):

    pirate            a persona with 14 hardcoded questions
    french            an instruction, stims from a 16-row JSONL file
    customer_service  a long teacher prompt behind a short student trigger
    two_targets       two triggered personas in one bake (closure per target)

Target (issue 14): closure >= 0.9 for every case (every target), each bake <= 600 s on 2 cores.
``--quick`` checks the whole path in a few minutes (short responses, one epoch, few stims);
its closures mean nothing. ``--set KEY=VALUE`` overrides input.yml keys (dotted, YAML values;
``TARGET.*`` applies to every target of a TARGETS list) for experiments; ``--workdir`` keeps
the repositories, so a rerun reuses cached stim/rollout phases (its bake wall time then
counts only what ran; the phase timings show the rest). ``--log FILE`` appends one JSON line
per case (config overrides, closures, wall and CPU seconds of the bake's process tree).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's bgit, here and in the bgit subprocesses (bgit())
HELDOUT = ROOT / "bench" / "data" / "heldout"
CASES = ("pirate", "french", "customer_service", "two_targets")
TARGET_CLOSURE, TARGET_SECONDS = 0.9, 600
# --quick: the whole path, small (closures are not meaningful)
QUICK = {"TARGET.max_tokens": 16, "TARGET.num_traj_per_stimulus": 1, "TARGET.augment.min_stims": 24,
         "BAKE.epochs": 1}
QUICK_EVAL_STIMS = 6


def bgit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m bgit ARGS`` of this checkout (not whatever bgit the interpreter has installed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"bgit {' '.join(args)} failed in {cwd}:\n{result.stderr[-4000:]}")
    return result


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _set_path(node: dict, parts: list[str], value) -> None:
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def apply_overrides(text: str, overrides: dict) -> str:
    """input.yml text with dotted keys replaced; TARGET.* reaches every target of TARGETS."""
    import yaml

    if not overrides:
        return text
    data = yaml.safe_load(text)
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[0] == "TARGET" and "TARGETS" in data:
            for target in data["TARGETS"]:
                _set_path(target, parts[1:], value)
        else:
            _set_path(data, parts, value)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def prepare_repo(case: str, repo: Path, overrides: dict) -> None:
    from bgit.config import example_files, example_text

    if not (repo / ".git").exists():
        repo.parent.mkdir(parents=True, exist_ok=True)
        bgit(repo.parent, "init", str(repo))
    for relative, data in example_files(case).items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_bytes(data)
    (repo / "input.yml").write_text(apply_overrides(example_text(case), overrides), encoding="utf-8")


def run_case(case: str, repo: Path, overrides: dict, quick: bool, eval_max_tokens: int | None) -> dict:
    import yaml

    prepare_repo(case, repo, overrides)
    cpu_before, started = child_cpu_seconds(), time.monotonic()
    bgit(repo, "bake", "-m", f"bench {case}", "--force")
    wall = time.monotonic() - started
    cpu = child_cpu_seconds() - cpu_before
    record = yaml.safe_load((repo / "bake.yml").read_text())
    args = ["eval", "HEAD", "--stims", str(HELDOUT / f"{case}.jsonl"), "--json", "--no-save"]
    if quick:
        args += ["--max-stims", str(QUICK_EVAL_STIMS)]
    if eval_max_tokens:
        args += ["--max-tokens", str(eval_max_tokens)]
    eval_started = time.monotonic()
    evaluation = json.loads(bgit(repo, *args).stdout)
    targets = {name: _target_sums(sums) for name, sums in evaluation["targets"].items()}
    return {"case": case, "overrides": overrides, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "timings": record.get("timings"), "tokens": record.get("tokens"),
            "stims": {name: t.get("stims") for name, t in (record.get("targets") or {}).items()}
            if isinstance(record.get("targets"), dict) else None,
            "bake_eval_closure": (record.get("metrics") or {}).get("eval_closure"),
            "final_eval_kl": (record.get("metrics") or {}).get("final_eval_kl"),
            "heldout_closure": evaluation["closure"], "targets": targets,
            "eval_seconds": round(time.monotonic() - eval_started, 1)}


def _target_sums(sums: dict) -> dict:
    """A target's eval sums, with the closure before and past the trained length (when
    --eval-max-tokens sampled past TARGET.max_tokens)."""
    from bgit.evaluate.results import KlSums

    past = sums.get("past_trained_length")
    return {"closure": sums["closure"], "kl_prompted_base": sums["kl_prompted_base"],
            "kl_prompted_baked": sums["kl_prompted_baked"], "tokens": sums["tokens"], "stims": sums["stims"],
            "closure_within_trained_length": KlSums.from_json(sums).closure_within_trained_length(),
            "closure_past_trained_length": past["closure"] if past else None,
            "tokens_past_trained_length": past["tokens"] if past else 0}


def report(results: list[dict], quick: bool) -> None:
    print(f"\n{'case':<18}{'target':<12}{'closure':>9}{'KL base':>9}{'KL baked':>10}{'bake s':>9}{'CPU s':>8}"
          f"{'within':>9}{'past':>7}")
    met = True
    for r in results:
        for n, (name, t) in enumerate(r["targets"].items()):
            wall = f"{r['wall_s']:>9.1f}{r['cpu_s']:>8.0f}" if n == 0 else " " * 17
            closure = t["closure"]
            split = "".join(f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"
                            for value, width in ((t.get("closure_within_trained_length"), 9),
                                                 (t.get("closure_past_trained_length"), 7)))
            print(f"{(r['case'] if n == 0 else ''):<18}{name:<12}{closure:>9.3f}{t['kl_prompted_base']:>9.3f}"
                  f"{t['kl_prompted_baked']:>10.3f}{wall}{split}")
            met &= closure is not None and closure >= TARGET_CLOSURE
        met &= r["wall_s"] <= TARGET_SECONDS
        timings = ", ".join(f"{phase} {seconds:.0f}" for phase, seconds in (r["timings"] or {}).items())
        print(f"{'':<18}phases (s): {timings}")
    print("within / past: the closure over the response tokens up to / past TARGET.max_tokens, the length "
          "the bake trained on ('-': no response went past it; --eval-max-tokens longer samples past it)")
    if not quick:
        print(f"\ntarget: closure >= {TARGET_CLOSURE} per target, bake <= {TARGET_SECONDS} s -> "
              f"{'met' if met else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--quick", action="store_true", help="Small bakes: checks the path, not the quality.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Override an input.yml key (repeatable), e.g. BAKE.epochs=3.")
    parser.add_argument("--workdir", help="Keep repositories here (reruns reuse cached phases).")
    parser.add_argument("--eval-max-tokens", type=int, help="Response tokens per held-out message "
                        "(default: the target's max_tokens, as bgit eval).")
    parser.add_argument("--log", help="Append one JSON line per case to this file.")
    parser.add_argument("--label", default="", help="A name for this run in the log.")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the bgit processes (default: "
                        "torch's, one per core). 1 is steadier on a machine other jobs load: two "
                        "threads there can stall on each other for seconds per token.")
    args = parser.parse_args()

    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from bgit.models import resolve_model

    resolve_model("smollm2-135m")  # converted once per machine, outside the clock
    overrides = {**(QUICK if args.quick else {}), **parse_overrides(args.set)}
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bgit-quality-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    results = []
    for case in args.cases.split(","):
        if case not in CASES:
            sys.exit(f"unknown case {case!r} (cases: {', '.join(CASES)})")
        load_before = os.getloadavg()[0]
        result = run_case(case, workdir / case, overrides, args.quick, args.eval_max_tokens)
        result.update(label=args.label, quick=args.quick, threads=torch.get_num_threads(),
                      load_before=round(load_before, 2),
                      load_after=round(os.getloadavg()[0], 2), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        results.append(result)
        print(json.dumps(result), flush=True)
        if args.log:
            with open(args.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(result) + "\n")
    report(results, args.quick)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
