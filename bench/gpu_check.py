"""The GPU check: bgit's CUDA paths on one GPU in one command, with TRL's GKDTrainer for the ratio.

    python bench/gpu_check.py --out gpu_check.json    # CUDA: ~0.5B and ~1.5B Llamas
    python bench/gpu_check.py --tiny --out tiny.json  # CPU: a ~1M-parameter Llama, seconds (tests/test_gpu_check.py)

Sized to finish well under 8 minutes on one H200 (an estimate: it has not run on a GPU yet);
--models 0.5B, --stims and --tokens shorten it.

Per model (randomly initialised from a LlamaConfig, saved as a safetensors directory and loaded
back through bgit.models.load_model with dtype auto, i.e. bf16 on a CUDA GPU; no download):

1. rollout: bgit.pipeline.rollout.rollout, the HF backend (batched generate with left padding,
   then the teacher-forcing pass that caches the top-20 log-probs and the tail), N stims x T new
   tokens (min_new_tokens = T, so every trajectory is T tokens) -> response tokens/s, peak memory;
2. train, bgit: those rollouts through bgit.pipeline.dataset.training_data into
   bgit.train.train_adapter, with the BAKE section of the check's input.yml
   makes of a BAKE with LoRA r=16 (alpha 32, all-linear), micro-batch 8, max_length 512
   (student context + response = sequence length <= 512) -> response tokens/s, peak memory;
3. train, TRL: trl's GKDTrainer (beta=0: forward KL; lmbda=0: no on-policy generation; T=1)
   on the same token sequences (student context + response, loss on response tokens only),
   same LoRA, micro-batch, learning rate and epochs. Its teacher is a second copy of the
   weights, recomputed over the whole vocabulary every step (GKD's design); bgit trains on the
   cached top-K and keeps one model. That difference is what the ratio measures.

Same precision on both: bf16 weights, fp32 LoRA weights (PEFT's default), bf16 autocast (bgit:
BAKE.autocast auto on CUDA; TRL: bf16=True). Gradient checkpointing is off on both (bgit has
none; TRL's SFT-based config turns it on by default, so it is turned off here). Tiny mode: fp32
on CPU for both (BAKE.autocast off; TRL bf16=False). tokens/s = response tokens
trained / wall seconds of the training call (both include their first, slower step). Peak
memory = torch.cuda.max_memory_allocated during the phase, resident models included (none on CPU).

Carrying it to a bare CUDA machine (no network there; torch, transformers, peft and accelerate
already installed; trl 1.16 wants transformers >= 4.56.2 and accelerate >= 1.10.1). The check
imports bgit from the working tree (PYTHONPATH=.) and needs, of bgit's dependencies, only
blake3, numpy and pyyaml; no git or store code runs, so pygit2 and zstandard are not needed.
Beforehand, here, into the working tree (an untracked, not ignored, folder travels with it):

    pip download --only-binary :all: --no-deps --python-version 3.11 --platform manylinux_2_28_x86_64 \\
        -d wheels/ blake3 trl==1.16.0 datasets dill multiprocess xxhash
    # cp311 x86_64 sizes: blake3 0.4 MB, trl 0.9 MB, datasets 0.6 MB, dill 0.1 MB,
    # multiprocess 0.1 MB, xxhash 0.5 MB: 2.6 MB. TRL imports datasets, which needs pyarrow
    # (55 MB) and pandas (12 MB): add them only if the machine lacks them (python -c "import
    # pyarrow, pandas"); both would exceed the 64 MiB a device command carries, so carry pyarrow
    # and pandas in a first call (pip install --target) or let the TRL row be skipped.

There, in one command:

    pip install --no-index --no-deps wheels/*.whl && PYTHONPATH=. python bench/gpu_check.py --out gpu_check.json

Every row that fails says why in its status and the exit code is 1; TRL missing is "skipped".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEACHER_SYSTEM = "You are a pirate. Answer every question in pirate speak, with nautical words."
TOPICS = ["the sea", "bread", "stars", "rivers", "chess", "music", "rain", "maps", "tea", "ships", "birds", "clocks"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class ModelSpec:
    label: str
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int


GPU_MODELS = (ModelSpec("0.5B", 1536, 16, 4096, 12, 4, 32000), ModelSpec("1.5B", 2048, 28, 6144, 16, 4, 32000))
TINY_MODEL = ModelSpec("tiny", 128, 4, 256, 4, 2, 1024)


@dataclass
class Row:
    model: str
    params: int
    phase: str                    # rollout | train
    implementation: str
    status: str = "ok"            # ok | skipped: why | failed: why
    tokens: int = 0               # response tokens generated / trained
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    peak_gib: float | None = None  # CUDA only
    details: dict = field(default_factory=dict)


# -- models and data ------------------------------------------------------------------------------

def byte_tokenizer(vocab_size: int):
    """Byte-level BPE with a ChatML template, padded with filler tokens to ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for special in ("<|im_start|>", "<|im_end|>", "<|pad|>"):
        vocab[special] = len(vocab)
    while len(vocab) < vocab_size:
        vocab[f"Ġw{len(vocab)}"] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|pad|>",
                                        bos_token="<|im_start|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model_dir(spec: ModelSpec, directory: Path, device: str) -> int:
    """A random Llama of ``spec`` saved (safetensors + tokenizer) in ``directory``; -> parameters."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer(spec.vocab)
    config = LlamaConfig(vocab_size=spec.vocab, hidden_size=spec.hidden, intermediate_size=spec.intermediate,
                         num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                         num_key_value_heads=spec.kv_heads, max_position_embeddings=1024, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    if device.startswith("cuda"):
        model.to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    del model
    free_memory()
    return params


def make_config(args):
    """An InputConfig whose BAKE section is what the check trains with."""
    import yaml

    import torch

    from bgit.config import parse_config

    cuda = torch.cuda.is_available()
    config = {
        "PROMPT": {"teacher": {"messages": [{"role": "system", "content": TEACHER_SYSTEM}]}},
        "TARGET": {"name": "pirate", "max_tokens": args.tokens, "top_k": 20, "temperature": 1.0,
                   "num_traj_per_stimulus": 1, "augment": 0,  # the check sizes its own batches
                   "generators": [{"type": "hardcoded", "stims": ["placeholder"]}]},
        # bf16 autocast on CUDA as TRL's bf16=True; fp32 on CPU as TRL's bf16=False
        "BAKE": {"epochs": args.epochs, "micro_batch_size": args.micro_batch, "autocast": "auto" if cuda else "off",
                 "optimizer": {"learning_rate": 1e-4}, "data": {"max_length": args.max_length, "train_eval_split": 1.0},
                 "model": {"baked_adapter_config": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                                                    "target_modules": "all-linear"}}},
    }
    return parse_config(yaml.safe_dump(config), "gpu_check.yml")


def make_stims(count: int) -> list[dict]:
    from bgit.record import stim_id

    texts = [f"Tell me about {TOPICS[i % len(TOPICS)]}, please (question {i})." for i in range(count)]
    return [{"id": stim_id(t), "text": t, "generator": "gpu_check"} for t in texts]


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Measure:
    """Wall seconds and peak CUDA memory of a block (synchronised)."""

    def __enter__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.peak_gib = torch.cuda.max_memory_allocated() / 2**30
        else:
            self.peak_gib = None
        self.seconds = time.perf_counter() - self.started


# -- the three phases -----------------------------------------------------------------------------

def run_rollout(model, tokenizer, config, stims, row: Row, batch_size: int) -> list[dict]:
    from bgit.pipeline.rollout import rollout

    target = config.targets[0]
    with Measure() as measured:
        rows = rollout(model, tokenizer, stims, config.prompt_for(target), target, seed=0, batch_size=batch_size,
                       min_new_tokens=target.max_tokens)
    finish(row, sum(len(r["response_ids"]) for r in rows), measured, batch_size=batch_size, stims=len(stims),
           new_tokens=target.max_tokens, top_k=target.top_k)
    return rows


def run_bgit_train(model, tokenizer, config, examples, device: str, work: Path, row: Row) -> None:
    from bgit.train import train_adapter

    bake = config.bake
    with Measure() as measured:
        result = train_adapter(model, tokenizer, examples, [], bake, work)
    finish(row, result.tokens, measured, final_train_kl=result.final_train_kl, autocast=result.autocast,
           micro_batch=bake.micro_batch_size, epochs=bake.epochs, lora_r=bake.lora.r,
           max_length=bake.data.max_length, gradient_checkpointing=False)


def run_trl_train(model_dir: Path, config, examples, device: str, row: Row) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from bgit.models import load_model, resolve_model

    resolved = resolve_model(model_dir)
    student, tokenizer = load_model(resolved, dtype="auto", device=device)
    teacher, _ = load_model(resolved, dtype="auto", device=device)   # GKD's design: a second model
    bake, cuda = config.bake, device.startswith("cuda")
    data = Dataset.from_list([{"input_ids": e.student_ids + e.response_ids, "n_prompt": len(e.student_ids)}
                              for e in examples])
    with tempfile.TemporaryDirectory() as out:
        args = GKDConfig(output_dir=out, per_device_train_batch_size=bake.micro_batch_size,
                         gradient_accumulation_steps=bake.gradient_accumulation_steps, num_train_epochs=bake.epochs,
                         learning_rate=bake.optimizer.learning_rate, lmbda=0.0, beta=0.0, temperature=1.0,
                         max_length=bake.data.max_length, bf16=cuda, use_cpu=not cuda, gradient_checkpointing=False,
                         report_to=[], save_strategy="no", logging_steps=10**6, dataloader_num_workers=0, seed=0,
                         disable_tqdm=True)
        lora = bake.lora
        peft_config = LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                                 target_modules=lora.target_modules, task_type="CAUSAL_LM")
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data,
                             processing_class=tokenizer, data_collator=Collator(tokenizer.pad_token_id),
                             peft_config=peft_config)
        trainer.remove_callback(PrinterCallback)  # bgit prints the table; no per-run metric dicts
        with Measure() as measured:
            trainer.train()
    tokens = sum(len(e.response_ids) for e in examples) * bake.epochs
    finish(row, tokens, measured, beta=args.beta, lmbda=args.lmbda, bf16=args.bf16,
           gradient_checkpointing=bool(args.gradient_checkpointing), micro_batch=args.per_device_train_batch_size,
           epochs=args.num_train_epochs, lora_r=lora.r)
    del trainer, student, teacher
    free_memory()


class Collator:
    """Right-padded student context + response; loss on response tokens only."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch):
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for i, b in enumerate(batch):
            n, start = len(b["input_ids"]), b["n_prompt"]
            ids[i, :n] = torch.tensor(b["input_ids"])
            mask[i, :n] = 1
            labels[i, start:n] = ids[i, start:n]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def finish(row: Row, tokens: int, measured: Measure, **details) -> None:
    row.tokens, row.seconds = tokens, round(measured.seconds, 3)
    row.tokens_per_s = round(tokens / measured.seconds, 1) if measured.seconds else 0.0
    row.peak_gib = round(measured.peak_gib, 2) if measured.peak_gib is not None else None
    row.details.update(details)


# -- one model, all phases ------------------------------------------------------------------------

def check_model(spec: ModelSpec, args, device: str, root: Path) -> list[Row]:
    model_dir = root / f"model-{spec.label}"
    params = build_model_dir(spec, model_dir, device)
    rows = [Row(spec.label, params, "rollout", "bgit rollout (hf backend, top-20)"),
            Row(spec.label, params, "train", "bgit train_adapter (top-20 KL)"),
            Row(spec.label, params, "train", "trl GKDTrainer (beta=0, lmbda=0)")]
    config = make_config(args)
    loaded = attempt(rows[0], lambda: load_and_roll_out(model_dir, config, args, device, root, rows[0]))
    if loaded is None:
        rows[1].status = rows[2].status = "skipped: no training data (rollout failed)"
        return rows
    model, tokenizer, examples = loaded
    attempt(rows[1], lambda: run_bgit_train(model, tokenizer, config, examples, device, root / f"work-{spec.label}",
                                            rows[1]))
    del model, tokenizer, loaded
    free_memory()
    rows[2].status = trl_missing() or "ok"
    if rows[2].status == "ok":
        attempt(rows[2], lambda: run_trl_train(model_dir, config, examples, device, rows[2]))
    return rows


def load_and_roll_out(model_dir: Path, config, args, device: str, root: Path, row: Row):
    """-> (model, tokenizer, training examples made from the measured rollout)."""
    from bgit.models import load_model, resolve_model
    from bgit.pipeline.dataset import training_data
    from bgit.record import write_jsonl

    model, tokenizer = load_model(resolve_model(model_dir), dtype="auto", device=device)
    rollout_rows = run_rollout(model, tokenizer, config, make_stims(args.stims), row, args.batch_size)
    rollout_dir = root / f"rollout-{model_dir.name}"
    write_jsonl(rollout_dir / "rollout.jsonl", rollout_rows)
    return model, tokenizer, training_data(config, {config.targets[0].name: rollout_dir}, tokenizer).train


def attempt(row: Row, run):
    """``run()``, or None with the failure in the row: a check reports every failure and goes on."""
    try:
        return run()
    except Exception as error:
        fail(row, error)
        return None


def fail(row: Row, error: BaseException) -> None:
    text = (str(error).strip().splitlines() or [""])[0]
    row.status = f"failed: {type(error).__name__}: {text}"[:300]


def trl_missing() -> str | None:
    try:
        import trl.experimental.gkd  # noqa: F401
    except Exception as error:  # ImportError, or a TRL built for other library versions
        return f"skipped: trl is not importable ({type(error).__name__}: {error}); pip install 'bgit[bench]'"
    return None


# -- report ---------------------------------------------------------------------------------------

def environment(device: str) -> dict:
    import peft
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "device": device}
    try:
        import trl

        info["trl"] = trl.__version__
    except Exception:
        info["trl"] = None
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    else:
        info["cpu"] = platform.machine()
    return info


def ratios(rows: list[Row]) -> list[dict]:
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        train = {r.implementation.split()[0]: r for r in rows if r.model == model and r.phase == "train"}
        bgit, trl = train.get("bgit"), train.get("trl")
        if bgit and trl and bgit.status == trl.status == "ok" and trl.tokens_per_s:
            memory = bgit.peak_gib / trl.peak_gib if bgit.peak_gib and trl.peak_gib else None
            out.append({"model": model, "tokens_per_s": round(bgit.tokens_per_s / trl.tokens_per_s, 2),
                        "peak_memory": round(memory, 2) if memory else None})
    return out


def print_table(report: dict) -> None:
    env = report["environment"]
    print(f"gpu_check ({report['mode']} mode) on {env.get('gpu') or env.get('cpu')}: torch {env['torch']}, "
          f"transformers {env['transformers']}, peft {env['peft']}, trl {env['trl'] or '-'}")
    header = ("model", "params", "phase", "implementation", "tokens", "seconds", "tokens/s", "peak GiB", "status")
    lines = [header]
    for r in report["rows"]:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        lines.append((r["model"], f"{r['params'] / 1e6:.1f}M", r["phase"], r["implementation"], str(r["tokens"]),
                      f"{r['seconds']:.2f}", f"{r['tokens_per_s']:.1f}", peak, r["status"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[-1])
    for ratio in report["ratios"]:
        memory = f"{ratio['peak_memory']:.2f}x the peak memory" if ratio["peak_memory"] else "peak memory not measured"
        print(f"{ratio['model']}: bgit / TRL GKD = {ratio['tokens_per_s']:.2f}x the tokens/s, {memory}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, a ~1M-parameter model, a handful of steps")
    parser.add_argument("--out", help="also write the report as JSON here")
    parser.add_argument("--models", help="comma-separated labels to run (default: all of the mode)")
    parser.add_argument("--stims", type=int, help="stims rolled out = training examples (default 128; tiny 8)")
    parser.add_argument("--tokens", type=int, help="new tokens per trajectory (default 448; tiny 16)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 2; tiny 1)")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="rollout batch size")
    parser.add_argument("--max-length", type=int, default=512, help="student context + response tokens")
    args = parser.parse_args(argv)
    defaults = (8, 16, 1) if args.tiny else (128, 448, 2)
    args.stims = args.stims or defaults[0]
    args.tokens = args.tokens or defaults[1]
    args.epochs = args.epochs or defaults[2]
    if args.tiny:
        args.micro_batch = min(args.micro_batch, 4)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --tiny for the CPU mode)", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    if args.tiny:  # on a shared CPU, OpenMP threads that spin-wait for each other are many times slower
        torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notices
            report = run_checks(args)
    finally:
        torch.set_num_threads(threads)
    print_table(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 1 if any(r["status"].startswith("failed") for r in report["rows"]) else 0


def run_checks(args) -> dict:
    device = "cpu" if args.tiny else "cuda"
    specs = (TINY_MODEL,) if args.tiny else GPU_MODELS
    if args.models:
        specs = tuple(s for s in specs if s.label in args.models.split(","))
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bgit-gpu-check-") as tmp:
        for spec in specs:
            rows += check_model(spec, args, device, Path(tmp))
    return {"mode": "tiny" if args.tiny else "gpu", "environment": environment(device),
            "settings": {k: v for k, v in vars(args).items() if k != "out"},
            "rows": [asdict(r) for r in rows], "ratios": ratios(rows),
            "seconds": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    sys.exit(main())
