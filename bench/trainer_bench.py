"""Trainer throughput, peak memory and held-out KL: bgit's KL trainer vs TRL's GKDTrainer.

The full run (on an otherwise idle machine; about 15-25 minutes on 2 cores):

    .venv/bin/python bench/trainer_bench.py --examples 64 --eval-examples 8 --response-tokens 128 \
        --lr 1e-3 | tee bench/results/<date>-<machine>/trainer_bench.txt

``--quick`` (16 train + 4 eval examples of 64 tokens) checks the whole path in a few minutes.

Both trainers bake the same prompt at the same operating point: same model (the embedded
SmolLM2-135M-Instruct), same examples (a teacher-sampled response to a user message; the
teacher context = system prompt + user message, the student context = the user message
alone), same LoRA (r=16, alpha=32, all-linear, no dropout), same micro-batch (4), one epoch,
same optimizer (AdamW, --lr, linear decay, no warm-up, clipping at 1.0), fp32 on CPU, and
the same activation checkpointing: each trainer runs without it (bgit's default) and with it
(TRL's GKDConfig default, inherited from SFTConfig; bgit with
``BAKE.model.disable_activation_checkpoint: false``).

GKDTrainer runs with beta=0 (forward KL) and lmbda=0 (no on-policy generation). Out of the
box it feeds the teacher the student's input, which would distil the unprompted model into
itself; ``PromptedTeacherGKD`` overrides its ``compute_loss`` so that its teacher model runs
on the teacher context + response and the two are aligned on the response tokens (GKD's own
``generalized_jsd_loss`` on those tokens). By design GKD holds a teacher model next to the
student and recomputes it over the full vocabulary every step; bgit trains on the teacher's
top-K (K=20) + tail cached at rollout time and keeps one model. After training, each child
measures the held-out KL(prompted || baked) per response token over the full vocabulary, with
the same code for both (bgit's evaluate_kl, loss=full), after the same optimizer steps; the
``base`` line is that KL before training (a zero-initialised LoRA), so each run's closure is
1 - its KL / base KL. ``bgit-bf16`` and ``trl-bf16`` repeat the runs under bf16 autocast, and
``bgit-full`` with ``BAKE.loss: full``: the teacher recomputed over the full vocabulary every step (the
parent is the same weights with the adapter off), GKD's objective and cost. Each run is its own
subprocess, so its peak RSS (VmHWM) is its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's bgit

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


SCHEDULE = {"type": "huggingface", "warmup_ratio": 0.0}   # = TRL's default: linear decay, no warm-up
LR = float(os.environ.get("TRAINER_BENCH_LR", "1e-3"))  # set from --lr (children read the environment)


def bake_settings(mbs: int, autocast: str = "off", checkpointing: bool = False, loss: str = "topk"):
    from bgit.config import from_dict
    from bgit.config.schema import BakeConfig

    return from_dict(BakeConfig, {
        "epochs": 1, "micro_batch_size": mbs, "autocast": autocast, "loss": loss, "optimizer": {"learning_rate": LR},
        "scheduler": SCHEDULE, "lora": {"r": LORA["r"], "lora_alpha": LORA["lora_alpha"]},
        "model": {"disable_activation_checkpoint": not checkpointing},
        "data": {"max_length": 1024}, "checkpoint": []})  # no checkpoints; no eval inside training


def heldout_kl(peft_model, eval_rows, mbs: int) -> float:
    """KL(prompted || baked) per held-out response token, full vocabulary: the teacher is the
    same weights with the adapter disabled, on the teacher context (bgit's evaluate_kl)."""
    import torch

    from bgit.train.data import prepare_examples
    from bgit.train.loop import evaluate_kl

    settings = dataclasses.replace(bake_settings(mbs), loss="full")
    items = prepare_examples(examples(eval_rows), 1024, False, True)
    return evaluate_kl(peft_model, items, settings, 0, torch.device("cpu"), False)


def run_base(eval_rows, mbs: int) -> dict:
    """The held-out KL before any training: a fresh LoRA (PEFT initialises B to zero) = the base."""
    from peft import LoraConfig, get_peft_model

    model, _ = load()
    peft = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    return {"eval_kl": heldout_kl(peft, eval_rows, mbs)}


def run_bgit(rows, eval_rows, autocast: str, mbs: int, checkpointing: bool, loss: str = "topk") -> dict:
    from peft import PeftModel

    from bgit.train import train_adapter

    model, tok = load()
    settings = bake_settings(mbs, autocast, checkpointing, loss)
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        result = train_adapter(model, tok, examples(rows), [], settings, Path(work))
        seconds = time.perf_counter() - t0
        rss = peak_rss_mb()
        peft = PeftModel.from_pretrained(model, str(result.adapter_dir))
        eval_kl = heldout_kl(peft, eval_rows, mbs)
    return {"seconds": seconds, "peak_rss_mb": rss, "train_kl": result.final_train_kl, "eval_kl": eval_kl}


def gkd_classes():
    """(GKDConfig, GKDTrainer): trl.experimental.gkd in newer TRL, trl itself in 0.12-0.2x."""
    try:
        from trl.experimental.gkd import GKDConfig, GKDTrainer
    except ImportError:
        from trl import GKDConfig, GKDTrainer
    return GKDConfig, GKDTrainer


def prompted_teacher_gkd():
    """GKDTrainer whose teacher sees the teacher prompt (see the module docstring)."""
    import torch
    GKDTrainer = gkd_classes()[1]

    class PromptedTeacherGKD(GKDTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            student = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            self.teacher_model.eval()
            with torch.no_grad():
                teacher = self.teacher_model(input_ids=inputs["teacher_input_ids"],
                                             attention_mask=inputs["teacher_attention_mask"])
            # logits at p predict token p+1; both masks select the response tokens in the same order
            student_logits = student.logits[:, :-1][inputs["labels"][:, 1:] != -100]
            teacher_logits = teacher.logits[:, :-1][inputs["teacher_labels"][:, 1:] != -100]
            loss = self.generalized_jsd_loss(student_logits.unsqueeze(0), teacher_logits.unsqueeze(0),
                                             labels=None, beta=self.beta, temperature=self.temperature,
                                             num_items_in_batch=num_items_in_batch)
            return (loss, student) if return_outputs else loss

    return PromptedTeacherGKD


def _right_pad(seqs, n_prompts, pad_id):
    import torch

    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (seq, n_prompt) in enumerate(zip(seqs, n_prompts)):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, n_prompt : len(seq)] = ids[i, n_prompt : len(seq)]
    return ids, mask, labels


def run_trl(rows, eval_rows, mbs: int, checkpointing: bool, bf16: bool = False) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    GKDConfig = gkd_classes()[0]

    model, tok = load()
    teacher, _ = load()  # GKD's design: a second model as the teacher

    def collate(batch):
        ids, mask, labels = _right_pad([b["student"] + b["response"] for b in batch],
                                       [len(b["student"]) for b in batch], tok.pad_token_id)
        t_ids, t_mask, t_labels = _right_pad([b["teacher"] + b["response"] for b in batch],
                                             [len(b["teacher"]) for b in batch], tok.pad_token_id)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "teacher_input_ids": t_ids,
                "teacher_attention_mask": t_mask, "teacher_labels": t_labels}

    data = Dataset.from_list([{k: r[k] for k in ("student", "teacher", "response")} for r in rows])
    with tempfile.TemporaryDirectory() as out:
        args = GKDConfig(output_dir=out, per_device_train_batch_size=mbs, gradient_accumulation_steps=1,
                         num_train_epochs=1, learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0,
                         weight_decay=0.0, max_grad_norm=1.0, lmbda=0.0, beta=0.0, temperature=1.0,
                         gradient_checkpointing=checkpointing, report_to=[], save_strategy="no",
                         logging_steps=10**6, use_cpu=True, bf16=bf16, max_length=1024,
                         dataloader_num_workers=0, seed=0, disable_tqdm=True)
        trainer = prompted_teacher_gkd()(model=model, teacher_model=teacher, args=args, train_dataset=data,
                                         processing_class=tok, data_collator=collate,
                                         peft_config=LoraConfig(task_type="CAUSAL_LM", **LORA))
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        rss = peak_rss_mb()
        del teacher, trainer.teacher_model
        trainer.model.eval()
        eval_kl = heldout_kl(trainer.model, eval_rows, mbs)
    return {"seconds": seconds, "peak_rss_mb": rss, "eval_kl": eval_kl}


RUNS = {  # name: (trainer, activation checkpointing, autocast, bgit's BAKE.loss)
    "base": ("base", False, "off", None),
    "bgit": ("bgit", False, "off", "topk"),
    "trl": ("trl", False, "off", None),
    "bgit-ckpt": ("bgit", True, "off", "topk"),
    "trl-ckpt": ("trl", True, "off", None),
    "bgit-bf16": ("bgit", False, "bf16", "topk"),
    "bgit-full": ("bgit", False, "off", "full"),
    "trl-bf16": ("trl", False, "bf16", None),
}


def child(kind: str, data: Path, n_train: int, mbs: int) -> None:
    rows = json.loads(data.read_text())
    train, held_out = rows[:n_train], rows[n_train:]
    trainer, checkpointing, autocast, loss = RUNS[kind]
    if trainer == "base":
        print("RESULT " + json.dumps(run_base(held_out, mbs)))
        return
    if trainer == "trl":
        out = run_trl(train, held_out, mbs, checkpointing, bf16=autocast == "bf16")
    else:
        out = run_bgit(train, held_out, autocast, mbs, checkpointing, loss)
    out["tokens"] = sum(len(r["response"]) for r in train)
    print("RESULT " + json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--eval-examples", type=int, default=8)
    ap.add_argument("--response-tokens", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=LR, help="Peak learning rate of both trainers.")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--quick", action="store_true", help="16 train + 4 eval examples of 64 tokens.")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.data), args.examples, args.micro_batch)
        return
    if args.quick:
        args.examples, args.eval_examples, args.response_tokens = 16, 4, 64
    os.environ["TRAINER_BENCH_LR"] = repr(args.lr)
    steps = -(-args.examples // args.micro_batch)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"lr {args.lr:g}, {steps} optimizer steps per trainer")
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
    print_table(results)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def print_table(results: dict) -> None:
    base = results.get("base", {}).get("eval_kl")
    print(f"\n{'trainer':<12}{'ckpt':>6}{'resp tok/s':>12}{'seconds':>10}{'peak RSS MB':>13}{'held-out KL':>13}"
          f"{'closure':>9}")
    for kind, r in results.items():
        closure = f"{1 - r['eval_kl'] / base:>9.3f}" if base else f"{'-':>9}"
        if kind == "base":
            print(f"{'base':<12}{'-':>6}{'-':>12}{'-':>10}{'-':>13}{r['eval_kl']:>13.4f}{closure}")
            continue
        ckpt = "on" if RUNS[kind][1] else "off"
        print(f"{kind:<12}{ckpt:>6}{r['tokens'] / r['seconds']:>12.1f}{r['seconds']:>10.1f}"
              f"{r['peak_rss_mb']:>13.0f}{r['eval_kl']:>13.4f}{closure}")
    for b_name, t_name, what in (("bgit", "trl", "no activation checkpointing"),
                                 ("bgit-ckpt", "trl-ckpt", "activation checkpointing on both"),
                                 ("bgit-full", "trl", "both recomputing the full-vocabulary teacher"),
                                 ("bgit-bf16", "trl-bf16", "bf16 autocast on both")):
        if b_name in results and t_name in results:
            b, t = results[b_name], results[t_name]
            print(f"bgit / TRL GKD, {what}: {t['seconds'] / b['seconds']:.2f}x tokens/s, "
                  f"{b['peak_rss_mb'] / t['peak_rss_mb']:.2f}x peak RSS, held-out KL {b['eval_kl']:.4f} vs "
                  f"{t['eval_kl']:.4f}")


if __name__ == "__main__":
    main()
