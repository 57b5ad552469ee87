"""Tiny random Llama models and a genuine baking scenario for the trainer tests.

The teacher is the model itself with a fixed "system prompt" prefix; the student sees the
same user context without it. Responses are sampled from the teacher, and the teacher's
top-K log-probs (temperature 1) plus the tail bucket are cached, as the rollout does.
"""

from __future__ import annotations

import numpy as np
import torch

from bgit.train import TrainExample

VOCAB = 256


def tiny_llama(seed: int = 0, vocab: int = VOCAB, hidden: int = 64, layers: int = 2, init_range: float = 0.2,
               dropout: float = 0.0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=init_range, attention_dropout=dropout, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def teacher_logprobs(model, context: list[int], response: list[int]) -> torch.Tensor:
    """[T, V] teacher log-probs of every response position (first token included)."""
    ids = torch.tensor([context + response[:-1]])
    logits = model(input_ids=ids).logits[0].float()
    start = len(context) - 1
    return torch.log_softmax(logits[start : start + len(response)], dim=-1)


@torch.no_grad()
def sample_response(model, context: list[int], length: int, gen: torch.Generator) -> list[int]:
    ids = list(context)
    for _ in range(length):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        ids.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)))
    return ids[len(context):]


def topk_arrays(logprobs: torch.Tensor, k: int):
    top = torch.topk(logprobs, k, dim=-1)
    mass = top.values.exp().sum(-1).clamp(max=1.0)
    tail = torch.log1p(-mass) if k < logprobs.shape[-1] else torch.full_like(mass, float("-inf"))
    return top.indices.int().numpy(), top.values.float().numpy(), tail.float().numpy()


def baking_examples(model, n: int, k: int = 16, prefix_len: int = 6, ctx_len=(3, 8), resp_len=(4, 12),
                    seed: int = 0, vocab: int = VOCAB) -> list[TrainExample]:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    prefix = rng.integers(0, vocab, prefix_len).tolist()
    out = []
    for _ in range(n):
        ctx = rng.integers(0, vocab, int(rng.integers(*ctx_len))).tolist()
        teacher = prefix + ctx
        response = sample_response(model, teacher, int(rng.integers(*resp_len)), gen)
        ids, lps, tail = topk_arrays(teacher_logprobs(model, teacher, response), k)
        out.append(TrainExample(ctx, response, ids, lps, tail, teacher_ids=teacher))
    return out


def bake_settings(**overrides):
    """A BakeConfig for trainer tests: fast defaults, ``overrides`` keyed by field names, nested
    configs as dicts merged over the defaults: bake_settings(epochs=3, lora={"lora_dropout": 0.1})."""
    from bgit.config import from_dict
    from bgit.config.schema import BakeConfig

    settings = {"epochs": 2, "micro_batch_size": 4, "autocast": "off", "lora": {"r": 8},
                "optimizer": {"learning_rate": 1e-2}, "scheduler": {"type": "constant", "warmup_ratio": 0.0}}
    for key, value in overrides.items():
        settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value
    return from_dict(BakeConfig, settings)
