"""Real bake commits for the evaluate / use-command / hook tests, without running a bake.

A tiny random Llama with a byte-level tokenizer and a ChatML template is saved as a local HF
directory (the "base model"); each bake commit is written with ``repo.commit_files`` from an
input.yml, a bake.yml, stim/rollout JSONL made with the real records encoders, metrics.jsonl and
a PEFT adapter whose B factors are perturbed away from zero.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import torch
import yaml

SYSTEM = "Be terse."
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAIN_STIMS = ["hi", "why?", "sky", "tea"]
HELD_OUT_STIMS = ["ok?", "sea"]
TARGET_MODULES = ["q_proj", "v_proj", "o_proj", "down_proj"]


def byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|pad|>",
                                        bos_token="<|im_start|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_base_model(directory: Path, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.2, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    model = LlamaForCausalLM(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def make_adapter(base_dir: Path, out: Path, seed: int, scale_b: float = 0.3, r: int = 4,
                 modules=TARGET_MODULES, zero: bool = False, like: Path | None = None,
                 change: tuple[str, ...] = ()) -> Path:
    """A PEFT adapter with random B; ``like`` + ``change``: copy ``like`` and re-draw only the
    modules whose names contain one of ``change`` (the rest keep identical bytes)."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    if like is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_bytes((like / "adapter_config.json").read_bytes())
        tensors = load_file(str(like / "adapter_model.safetensors"))
        gen = torch.Generator().manual_seed(seed)
        for key in tensors:
            if any(c in key for c in change):
                tensors[key] = torch.randn(tensors[key].shape, generator=gen) * (scale_b if "lora_B" in key else 0.3)
        save_file(tensors, str(out / "adapter_model.safetensors"))
        return out
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(modules),
                                                  lora_dropout=0.0, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.zeros_like(param) if zero else torch.randn_like(param) * scale_b)
    peft_model.save_pretrained(str(out), safe_serialization=True)
    return out


def input_yml(base_dir: Path, stims=TRAIN_STIMS + HELD_OUT_STIMS, learning_rate: str = "1e-3") -> str:
    stim_lines = "\n".join(f"            - {s!r}" for s in stims)
    return textwrap.dedent("""\
        MODEL:
          base: {base}
        PROMPT:
          teacher:
            messages:
              - role: system
                content: {system!r}
          student:
            messages: []
        TARGET:
          name: terse
          max_tokens: 6
          num_traj_per_stimulus: 1
          augment: 0
          generators:
            - type: hardcoded
              stims:
        {stims}
        BAKE:
          name: terse
          optimizer:
            learning_rate: {lr}
        """).format(base=str(base_dir), system=SYSTEM, stims=stim_lines, lr=learning_rate)


def stim_id(text: str) -> str:
    import blake3

    return blake3.blake3(text.encode()).hexdigest()[:12]


def rollout_rows(base_dir: Path, stims: list[str], length: int = 5, seed: int = 0) -> list[dict]:
    """Teacher-prompted greedy-ish responses with their real top-K arrays."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bgit.models import render_context
    from bgit.pipeline.records import encode_array

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for text in stims:
        context = render_context(tokenizer, [{"role": "system", "content": SYSTEM}], user=text)
        response = []
        with torch.no_grad():
            for _ in range(length):
                logits = model(input_ids=torch.tensor([context + response])).logits[0, -1]
                response.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)))
            logits = model(input_ids=torch.tensor([context + response[:-1]])).logits[0, len(context) - 1:]
        logprobs = torch.log_softmax(logits.float(), -1)
        top = torch.topk(logprobs, 4, dim=-1)
        tail = torch.log1p(-top.values.exp().sum(-1).clamp(max=1 - 1e-6))
        rows.append({"stim_id": stim_id(text), "stim": text, "traj": 0,
                     "response": tokenizer.decode(response), "response_ids": response, "k": 4,
                     "topk_ids": encode_array(top.indices.numpy().astype(np.int32).reshape(-1)),
                     "topk_logprobs": encode_array(top.values.numpy().astype(np.float32).reshape(-1)),
                     "tail_logprob": encode_array(tail.numpy().astype(np.float32))})
    return rows


def metrics_rows(steps: int = 8, start: float = 2.0) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        rows.append({"step": step, "epoch": (step - 1) // 4, "lr": 1e-3, "train_kl": start / step,
                     "tokens": 10 * step, "tokens_per_s": 100.0})
        if step % 4 == 0:
            rows.append({"step": step, "epoch": (step - 1) // 4, "eval_kl": start / step + 0.1})
    return rows


def commit_bake(repo, base_dir: Path, adapter_dir: Path, work: Path, message: str, *,
                stims=TRAIN_STIMS + HELD_OUT_STIMS, held_out=HELD_OUT_STIMS, learning_rate: str = "1e-3",
                with_eval_stims: bool = True, final_eval_kl: float = 0.5, rows: list[dict] | None = None) -> str:
    from bgit.models import resolve_model
    from bgit.pipeline.records import write_jsonl

    work.mkdir(parents=True, exist_ok=True)
    (work / "input.yml").write_text(input_yml(base_dir, stims, learning_rate))
    record = {
        "bgit_bake": 1,
        "base_model": {"name": str(base_dir), "fingerprint": resolve_model(str(base_dir)).fingerprint},
        "parent": {"mode": "base", "commit": None, "adapter_digest": None},
        "targets": ["terse"],
        "hyperparameters": {"optimizer": {"learning_rate": float(learning_rate)}},
        "metrics": {"final_train_kl": 0.25, "final_eval_kl": final_eval_kl},
    }
    if with_eval_stims:
        record["eval_stims"] = {"terse": [stim_id(s) for s in held_out]}
    (work / "bake.yml").write_text(yaml.safe_dump(record, sort_keys=False))
    write_jsonl(work / "stim.jsonl", [{"id": stim_id(s), "text": s, "generator": "hardcoded"} for s in stims])
    write_jsonl(work / "rollout.jsonl", rows if rows is not None else rollout_rows(base_dir, stims))
    write_jsonl(work / "metrics.jsonl", metrics_rows())
    files = {"input.yml": work / "input.yml", "bake.yml": work / "bake.yml",
             "targets/terse/stim.jsonl": work / "stim.jsonl", "targets/terse/rollout.jsonl": work / "rollout.jsonl",
             "metrics.jsonl": work / "metrics.jsonl",
             "adapter/adapter_config.json": adapter_dir / "adapter_config.json",
             "adapter/adapter_model.safetensors": adapter_dir / "adapter_model.safetensors"}
    return repo.commit_files(files, message, replace_dirs=("targets", "adapter"))


def build_history(root: Path):
    """A repo with two bakes: HEAD~1 (adapter A) and HEAD (adapter B: some modules changed, an
    added stim, a new learning rate). -> (repo, base_dir, {'a': dir, 'b': dir}, {'a': sha, 'b': sha})."""
    from bgit.repo import Repository

    base_dir = make_base_model(root / "base-model")
    repo = Repository.init(root / "repo")
    adapter_a = make_adapter(base_dir, root / "adapter-a", seed=1)
    adapter_b = make_adapter(base_dir, root / "adapter-b", seed=2, like=adapter_a, change=("q_proj", "layers.1.mlp"))
    rows = rollout_rows(base_dir, TRAIN_STIMS + HELD_OUT_STIMS + ["new one"])
    sha_a = commit_bake(repo, base_dir, adapter_a, root / "work-a", "bake a", rows=rows[:-1])
    sha_b = commit_bake(repo, base_dir, adapter_b, root / "work-b", "bake b",
                        stims=TRAIN_STIMS + HELD_OUT_STIMS + ["new one"], learning_rate="5e-4", rows=rows)
    return repo, base_dir, {"a": adapter_a, "b": adapter_b}, {"a": sha_a, "b": sha_b}


def png_ok(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100 and path.stat().st_size > 2000


def adapter_tensors(adapter_dir: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors")), json.loads(
        (adapter_dir / "adapter_config.json").read_text())
