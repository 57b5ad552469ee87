"""Tiny real components for model/stim/rollout tests: a char-level chat tokenizer and a random Llama."""

from __future__ import annotations

import string

# SmolLM2-135M-Instruct's chat template, verbatim: it injects a default system prompt.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]


def char_tokenizer(chat_template: str = SMOLLM2_TEMPLATE, with_pad: bool = False):
    """A character-level fast tokenizer with ChatML special tokens (vocab ~100)."""
    from tokenizers import Tokenizer, decoders
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {token: i for i, token in enumerate(SPECIAL + chars)}
    backend = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        eos_token="<|im_end|>",
        pad_token="<pad>" if with_pad else None,
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = chat_template
    tokenizer.padding_side = "left"
    return tokenizer


def tiny_llama(vocab_size: int, seed: int = 0, eos_token_id: int = 2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,  # head_dim 64: a size every vLLM attention backend supports
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        pad_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    # Random init is nearly uniform; sharpen it so top-K and EOS behave like a real model.
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    return model


class one_thread:
    """Run torch on one thread: on a shared, oversubscribed CPU two OpenMP threads that
    spin-wait for each other were measured 10-30x slower than one."""

    def __enter__(self):
        import torch

        self.previous = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.previous)
