"""A shared prompt prefix: the contexts' common first tokens run once, their KV cache shared.

A bake's contexts all start with the same system prompt; the rollout's sampling, the eval's
teacher-forcing passes and the teacher of ``loss: full`` run that prefix once per batch instead
of once per row (a 330-token policy prompt is most of every row's tokens).
"""

from __future__ import annotations

import functools

# Below this many shared tokens, running the prefix on its own saves less than it costs.
MIN_SHARED_PREFIX = 16


def shared_prefix(model, contexts: list[list[int]]) -> int:
    """Length of the contexts' common token prefix worth sharing, 0 when none is or when the
    model's cache cannot be shared this way (encoder-decoder, sliding-window or linear layers).
    Every row keeps at least one token of its own for the prefill."""
    if len(contexts) < 2 or not _full_attention_only(model.config):
        return 0
    first, length = contexts[0], min(len(c) for c in contexts) - 1
    for context in contexts[1:]:
        length = next((i for i in range(length) if context[i] != first[i]), length)
    return length if length >= MIN_SHARED_PREFIX else 0


def _full_attention_only(config) -> bool:
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return all(kind == "full_attention" for kind in getattr(config, "layer_types", None) or ())


def prefix_cache(model, prefix_ids, rows: int) -> dict:
    """-> the keyword (for ``generate`` or a forward call) holding the KV cache of
    ``prefix_ids`` [1, P], repeated for ``rows``."""
    from transformers import DynamicCache

    cache = DynamicCache()
    keyword = cache_keyword()
    model(input_ids=prefix_ids, use_cache=True, logits_to_keep=1, **{keyword: cache})
    cache.batch_repeat_interleave(rows)
    return {keyword: cache}


@functools.cache
def cache_keyword() -> str:
    """transformers renamed ``past_key_values`` to ``cache`` (5.2x); use the installed one's name."""
    import inspect

    from transformers import GenerationMixin

    return "cache" if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters \
        else "past_key_values"
