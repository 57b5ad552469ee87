"""Repositories, servers and an independent reference for the serve tests.

Mechanics run on a tiny random Llama (byte tokenizer, ChatML template, 4096 positions so a
long generation takes long enough to be interrupted). Behaviour runs on a real bake of the
embedded SmolLM2-135M: a few-shot pirate prompt that the 135M model follows reliably
("Ahoy, matey!" first), baked in about half a minute.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from evaluate_helpers import byte_tokenizer, commit_bake, make_adapter

API_KEY = "test-key-8f2e51"

PIRATE_TEACHER = [
    {"role": "system", "content": "You are a pirate. Begin every answer with 'Ahoy, matey!'"},
    {"role": "user", "content": "What is the best fruit?"},
    {"role": "assistant", "content": "Ahoy, matey! The best fruit be the orange, arr."},
    {"role": "user", "content": "How are you?"},
    {"role": "assistant", "content": "Ahoy, matey! I be grand, arr."},
]
PIRATE_STIMS = ["Tell me about the ocean.", "How do I fix a flat tyre?", "What should I eat for breakfast?",
                "Why is the sky blue?", "Give me advice on making friends.", "How do computers work?",
                "What is your favourite season?", "How do I learn to cook?"]
HELD_OUT = ["What is the capital of Italy?", "Tell me about dogs.", "What is a good book?"]


def tiny_base_model(directory: Path, max_positions: int = 4096, seed: int = 0) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                         initializer_range=0.2, tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    directory.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).eval().save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def tiny_repo(root: Path):
    """main: bake a (HEAD~1, tag v1) then bake b (HEAD) on a tiny random Llama.
    -> (repo, base dir, {name: adapter dir}, {name: sha})."""
    return two_bake_repo(root, tiny_base_model(root / "base-model"))


def two_bake_repo(root: Path, base: Path):
    """main: bake a (HEAD~1, tag v1) then bake b (HEAD), random adapters on ``base``.
    -> (repo, base dir, {name: adapter dir}, {name: sha})."""
    from bgit.repo import Repository

    repo = Repository.init(root / "repo")
    adapters = {"a": make_adapter(base, root / "adapter-a", seed=1), "b": make_adapter(base, root / "adapter-b", seed=2)}
    shas = {"a": commit_bake(repo, base, adapters["a"], root / "work-a", "bake a", rows=[])}
    repo.create_tag("v1", shas["a"])
    shas["b"] = commit_bake(repo, base, adapters["b"], root / "work-b", "bake b", rows=[])
    return repo, base, adapters, shas


class Reference:
    """Greedy decoding with plain transformers + PEFT, one prompt at a time, no KV cache:
    what the server must reproduce, computed without any of its code. ``kv_cache=True``
    keeps transformers' own cache between steps (a backend that is not transformers can be
    checked against it, at a fraction of the time on a bigger model)."""

    def __init__(self, base_dir: Path, kv_cache: bool = False) -> None:
        from transformers import AutoTokenizer

        self.base_dir, self.kv_cache = base_dir, kv_cache
        self.tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
        self._models: dict = {}

    def model(self, adapter_dir: Path | None):
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        if adapter_dir not in self._models:
            model = AutoModelForCausalLM.from_pretrained(str(self.base_dir)).eval()
            if adapter_dir is not None:
                model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
            self._models[adapter_dir] = model
        return self._models[adapter_dir]

    def greedy(self, adapter_dir: Path | None, prompt_ids: list[int], tokens: int) -> list[int]:
        model, ids = self.model(adapter_dir), list(prompt_ids)
        with torch.no_grad():
            if self.kv_cache:
                out = model(input_ids=torch.tensor([ids]), use_cache=True)
                for _ in range(tokens):
                    ids.append(int(out.logits[0, -1].argmax()))
                    out = model(input_ids=torch.tensor([ids[-1:]]), past_key_values=out.past_key_values,
                                use_cache=True)
                return ids[len(prompt_ids):]
            for _ in range(tokens):
                ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
        return ids[len(prompt_ids):]

    def chat_ids(self, user: str, messages=()) -> list[int]:
        from bgit.models import render_context

        return render_context(self.tokenizer, list(messages), user=user)

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def raw_request(url: str, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
    """-> (status, parsed JSON or text) over a plain http.client connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        payload = body.encode() if isinstance(body, str) else body
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        data = response.read().decode()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data
    finally:
        connection.close()


def make_pirate_bake(root: Path) -> Path:
    """A real `bgit bake` of the pirate prompt on SmolLM2-135M (one commit on main)."""
    config = {
        "MODEL": {"base": "smollm2-135m"},
        "PROMPT": {"teacher": {"messages": PIRATE_TEACHER}, "student": {"messages": []}},
        "TARGET": {"name": "pirate", "max_tokens": 8, "temperature": 1.0, "num_traj_per_stimulus": 1, "augment": 0,
                   "generators": [{"type": "hardcoded", "stims": PIRATE_STIMS}]},
        "BAKE": {"name": "pirate", "epochs": 4, "micro_batch_size": 8, "seed": 0,
                 "model": {"baked_adapter_config": {"r": 8}}, "optimizer": {"learning_rate": 3.0e-3},
                 "data": {"train_eval_split": 1.0}},
    }
    for args, cwd in ((["init", str(root)], root.parent), (["bake", "-m", "Bake a pirate"], root)):
        if args[0] == "bake":
            (root / "input.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    return root
