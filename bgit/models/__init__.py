"""Models: resolve a name or path to a local HF directory, load it, render chat contexts.

    rm = resolve_model("smollm2-135m")      # ResolvedModel(name, path, fingerprint)
    model, tokenizer = load_model(rm)       # eval mode, no dropout, left-padding tokenizer
    ids = render_context(tokenizer, messages, user="Hi")   # list[int]
    vllm_model_dir(rm.path)                 # a directory vLLM can load (no GGUF quantization_config)

Heavy imports (torch, transformers) happen inside the functions, so importing this
package is cheap.
"""

from bgit.models.chat import render_context
from bgit.models.errors import (
    ChatTemplateError,
    EmbeddedModelMissingError,
    ModelConversionError,
    ModelError,
    ModelNotFoundError,
)
from bgit.models.loading import load_model, load_tokenizer, resolve_dtype
from bgit.models.resolve import EMBEDDED_MODELS, ResolvedModel, cache_root, fingerprint_model_dir, resolve_model
from bgit.models.vllm_dir import vllm_model_dir

__all__ = [
    "EMBEDDED_MODELS",
    "ChatTemplateError",
    "EmbeddedModelMissingError",
    "ModelConversionError",
    "ModelError",
    "ModelNotFoundError",
    "ResolvedModel",
    "cache_root",
    "fingerprint_model_dir",
    "load_model",
    "load_tokenizer",
    "render_context",
    "resolve_dtype",
    "resolve_model",
    "vllm_model_dir",
]
