"""Loading a resolved model: eval mode, no dropout, a tokenizer ready for batched generation."""

from __future__ import annotations

from contextlib import contextmanager

from bgit.models.errors import ModelError
from bgit.models.resolve import ResolvedModel

DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtype(dtype: str, device: str):
    """'auto' = float32 on CPU (bf16 matmuls are slower there), bf16 on a CUDA GPU that has it."""
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(resolved: ResolvedModel, dtype: str = "auto", device: str | None = None, trust_remote_code: bool = False):
    """-> (model, tokenizer). The tokenizer pads on the left and always has a pad token.
    Weights load from safetensors only (DESIGN §5: no pickle)."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    tokenizer = load_tokenizer(resolved, trust_remote_code=trust_remote_code)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(
            resolved.path, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    if resolved.hub_repo:
        # Adapters trained on this model then name the hub id (PEFT reads name_or_path into
        # adapter_config.json's base_model_name_or_path), not this machine's cache path.
        model.name_or_path = model.config._name_or_path = resolved.hub_repo
    model.to(device)
    disable_dropout(model)
    model.eval()
    return model, tokenizer


def load_tokenizer(resolved: ResolvedModel, trust_remote_code: bool = False):
    """The tokenizer alone (backends that load weights themselves, e.g. vLLM), set up as
    :func:`load_model` sets it up: left padding, a pad token."""
    from transformers import AutoTokenizer

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def disable_dropout(model) -> None:
    """Zero every dropout probability, so that even ``model.train()`` is deterministic."""
    import torch

    for name in dir(model.config):
        if "dropout" in name and isinstance(getattr(model.config, name, None), float):
            setattr(model.config, name, 0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "attention_dropout") and isinstance(module.attention_dropout, float):
            module.attention_dropout = 0.0


@contextmanager
def quiet_transformers():
    """Silence transformers' notices and progress bars (bgit renders its own progress)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
