"""Models: resolve a name or path to a local HF directory, load it, render chat contexts.

    rm = resolve_model("smollm2-135m")      # ResolvedModel(name, path, fingerprint, revision, source)
    rm = resolve_model("Qwen/Qwen3-0.6B")   # a Hugging Face id: huggingface_hub's cache, downloaded once
    model, tokenizer = load_model(rm)       # eval mode, no dropout, left-padding tokenizer
    ids = render_context(tokenizer, messages, user="Hi")   # list[int]
    list_models(paths=()).models            # what can serve as a base (bgit models)
    vllm_model_dir(rm.path)                 # a directory vLLM can load (no GGUF quantization_config)

Heavy imports (torch, transformers, huggingface_hub) happen inside the functions, so
importing this package is cheap.
"""

from bgit.models.chat import render_context
from bgit.models.errors import (
    ChatTemplateError,
    EmbeddedModelMissingError,
    HubModelError,
    IncompleteModelError,
    ModelConversionError,
    ModelError,
    ModelNotCachedError,
    ModelNotFoundError,
    PickleWeightsError,
)
from bgit.models.hub import HubId, hub_cache_dir, offline_reason, parse_hub_id
from bgit.models.listing import ModelEntry, ModelsListing, list_models
from bgit.models.loading import load_model, load_tokenizer, resolve_dtype
from bgit.models.resolve import (
    EMBEDDED_MODELS,
    ResolvedModel,
    cache_root,
    fingerprint_model_dir,
    resolve_adapter_base,
    resolve_model,
)
from bgit.models.vllm_dir import vllm_model_dir

__all__ = [
    "EMBEDDED_MODELS",
    "ChatTemplateError",
    "EmbeddedModelMissingError",
    "HubId",
    "HubModelError",
    "IncompleteModelError",
    "ModelConversionError",
    "ModelEntry",
    "ModelError",
    "ModelNotCachedError",
    "ModelNotFoundError",
    "ModelsListing",
    "PickleWeightsError",
    "ResolvedModel",
    "cache_root",
    "fingerprint_model_dir",
    "hub_cache_dir",
    "list_models",
    "load_model",
    "offline_reason",
    "parse_hub_id",
    "load_tokenizer",
    "render_context",
    "resolve_adapter_base",
    "resolve_dtype",
    "resolve_model",
    "vllm_model_dir",
]
