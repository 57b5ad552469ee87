"""Trainer throughput and peak memory: bgit's KL trainer vs TRL's GKDTrainer.

    .venv/bin/python bench/trainer_bench.py [--examples 64] [--response-tokens 128]

Same model (the embedded SmolLM2-135M-Instruct), same token sequences (student context +
teacher-sampled response), same LoRA (r=16, alpha=32, all-linear, no dropout), same
micro-batch (4), one epoch, fp32 on CPU. GKDTrainer runs with beta=0 (forward KL) and
lmbda=0 (no on-policy generation); by design it holds a teacher model next to the student
and recomputes the teacher every step, whereas bgit trains on the cached teacher top-K
(K=20) and keeps one model. Each trainer runs in its own subprocess so its peak RSS (VmHWM)
is its own. ``bgit-bf16`` repeats bgit's run under bf16 autocast, with the eval KL of both
bgit runs on held-out examples, to decide the autocast default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEACHER_SYSTEM = "You are a pirate. Answer every question in pirate speak, with nautical words."
TOPICS = ["the weather", "cooking pasta", "the moon", "learning Python", "a good book", "running shoes",
          "the ocean", "city parks", "coffee", "trains", "music theory", "gardening", "chess", "rain",
          "mountains", "history of maps"]
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load():
    from bgit.models import load_model, resolve_model

    model, tokenizer = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer


def make_data(path: Path, n: int, response_tokens: int, k: int = 20) -> None:
    """Teacher = the model with a system prompt; responses sampled from it; top-K cached."""
    import torch

    from bgit.models import render_context

    torch.manual_seed(0)
    model, tok = load()
    questions = [f"Tell me something about {TOPICS[i % len(TOPICS)]} (question {i})." for i in range(n)]
    teacher_sys = [{"role": "system", "content": TEACHER_SYSTEM}]
    rows = []
    for start in range(0, n, 16):
        chunk = questions[start : start + 16]
        teachers = [render_context(tok, teacher_sys, user=q) for q in chunk]
        width = max(map(len, teachers))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = torch.tensor([[pad] * (width - len(t)) + t for t in teachers])
        mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in teachers])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=response_tokens,
                                 min_new_tokens=response_tokens, top_k=0, top_p=1.0, pad_token_id=pad)
        for q, t, seq in zip(chunk, teachers, out[:, width:].tolist()):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([t + seq[:-1]])).logits[0, len(t) - 1 :].float()
            top = torch.topk(torch.log_softmax(logits, -1), k, -1)
            tail = torch.log1p(-top.values.exp().sum(-1).clamp(max=1 - 1e-7))
            rows.append({"student": render_context(tok, [], user=q), "teacher": t, "response": seq,
                         "topk_ids": top.indices.tolist(), "topk_logprobs": top.values.tolist(),
                         "tail": tail.tolist()})
    path.write_text(json.dumps(rows))


def examples(rows):
    import numpy as np

    from bgit.train import TrainExample

    return [TrainExample(r["student"], r["response"], np.array(r["topk_ids"], np.int32),
                         np.array(r["topk_logprobs"], np.float32), np.array(r["tail"], np.float32),
                         teacher_ids=r["teacher"]) for r in rows]


def run_bgit(rows, eval_rows, autocast: str, mbs: int) -> dict:
    import torch
    from peft import PeftModel

    from bgit.config import from_dict
    from bgit.config.schema import BakeConfig
    from bgit.train import train_adapter
    from bgit.train.data import prepare_examples
    from bgit.train.loop import evaluate_kl

    model, tok = load()
    settings = from_dict(BakeConfig, {
        "epochs": 1, "micro_batch_size": mbs, "autocast": autocast, "optimizer": {"learning_rate": 1e-4},
        "lora": {"r": LORA["r"], "lora_alpha": LORA["lora_alpha"]}, "data": {"max_length": 1024},
        "checkpoint": []})  # no checkpoints; eval is not run by train_adapter without eval examples
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        result = train_adapter(model, tok, examples(rows), [], settings, Path(work))
        seconds = time.perf_counter() - t0
        rss = peak_rss_mb()
        items = prepare_examples(examples(eval_rows), 1024, True, False)
        peft = PeftModel.from_pretrained(model, str(result.adapter_dir))
        eval_kl = evaluate_kl(peft, items, settings, tok.pad_token_id, torch.device("cpu"), False)
    return {"seconds": seconds, "peak_rss_mb": rss, "train_kl": result.final_train_kl, "eval_kl": eval_kl}


def run_trl(rows, mbs: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    model, tok = load()
    teacher, _ = load()  # GKD's design: a second model as the teacher

    def collate(batch):
        seqs = [b["input_ids"] for b in batch]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, b in enumerate(batch):
            n, s = len(b["input_ids"]), b["n_prompt"]
            ids[i, :n] = torch.tensor(b["input_ids"])
            mask[i, :n] = 1
            labels[i, s:n] = ids[i, s:n]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    data = Dataset.from_list([{"input_ids": r["student"] + r["response"], "n_prompt": len(r["student"])} for r in rows])
    with tempfile.TemporaryDirectory() as out:
        args = GKDConfig(output_dir=out, per_device_train_batch_size=mbs, gradient_accumulation_steps=1,
                         num_train_epochs=1, learning_rate=1e-4, lmbda=0.0, beta=0.0, temperature=1.0,
                         report_to=[], save_strategy="no", logging_steps=10**6, use_cpu=True, bf16=False,
                         max_length=1024, dataloader_num_workers=0, seed=0, disable_tqdm=True)
        trainer = GKDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=data,
                             processing_class=tok, data_collator=collate,
                             peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def child(kind: str, data: Path, n_train: int, mbs: int) -> None:
    rows = json.loads(data.read_text())
    train, held_out = rows[:n_train], rows[n_train:]
    if kind == "trl":
        out = run_trl(train, mbs)
    else:
        out = run_bgit(train, held_out, "bf16" if kind == "bgit-bf16" else "off", mbs)
    out["tokens"] = sum(len(r["response"]) for r in train)
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--eval-examples", type=int, default=8)
    ap.add_argument("--response-tokens", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--runs", default="bgit,trl,bgit-bf16")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.data), args.examples, args.micro_batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.json"
        t0 = time.perf_counter()
        make_data(data, args.examples + args.eval_examples, args.response_tokens)
        print(f"data: {args.examples} train + {args.eval_examples} eval examples, "
              f"{args.response_tokens}-token responses, made in {time.perf_counter() - t0:.0f}s", flush=True)
        results = {}
        for kind in args.runs.split(","):
            cmd = [sys.executable, __file__, "--child", kind, "--data", str(data), "--examples", str(args.examples),
                   "--micro-batch", str(args.micro_batch)]
            env = dict(os.environ, TRL_EXPERIMENTAL_SILENCE="1", PYTHONWARNINGS="ignore")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"{kind} failed:\n{proc.stderr[-3000:]}")
                continue
            results[kind] = json.loads(line[-1][7:])
            print(kind, results[kind], flush=True)
    print(f"\n{'trainer':<12}{'resp tok/s':>12}{'seconds':>10}{'peak RSS MB':>13}{'eval KL':>10}")
    for kind, r in results.items():
        kl = f"{r['eval_kl']:.4f}" if "eval_kl" in r else "-"
        print(f"{kind:<12}{r['tokens'] / r['seconds']:>12.1f}{r['seconds']:>10.1f}{r['peak_rss_mb']:>13.0f}{kl:>10}")
    if "bgit" in results and "trl" in results:
        b, t = results["bgit"], results["trl"]
        print(f"\nbgit / TRL GKD: {t['seconds'] / b['seconds']:.2f}x tokens/s, "
              f"{b['peak_rss_mb'] / t['peak_rss_mb']:.2f}x peak RSS")


if __name__ == "__main__":
    main()
