"""A batch of rows decoded together with one KV cache (transformers ``DynamicCache``).

Rows are left-padded; every row carries its own position ids, so rows of different lengths
(and batches joined later) line up by attention mask, never by absolute position. Invariant:
``mask.shape[1]`` equals the cache's sequence length, and ``logits[i]`` is row i's
distribution over its next token.

Rows leave as soon as they finish or their client goes away (``select``); a batch that
arrives while another runs is prefilled on its own and then joined to it (``merge``), so
all rows advance with one forward pass per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    """One generation in progress. ``emit(event)`` delivers to the client (thread-safe)."""

    prompt_ids: list[int]
    adapter: str | None          # PEFT adapter key; None = the base model
    params: object               # backend.SamplingParams
    text: object                 # decoding.IncrementalText
    generator: object            # torch.Generator
    emit: object
    eos_ids: frozenset = frozenset()
    tokens: list[int] = field(default_factory=list)
    cancelled: bool = False
    finish_reason: str | None = None


class Batch:
    def __init__(self, model, rows: list[Row], device, use_adapters: bool) -> None:
        import torch

        self.model, self.rows, self.device, self.use_adapters = model, rows, device, use_adapters
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), 0, dtype=torch.long)
        self.mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row.prompt_ids):] = torch.tensor(row.prompt_ids)
            self.mask[i, width - len(row.prompt_ids):] = 1
        self.mask = self.mask.to(device)
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.cache = _new_cache(model)
        self.logits = self._forward(ids.to(device), positions)
        self.next_position = self.mask.sum(-1)

    def __len__(self) -> int:
        return len(self.rows)

    def _forward(self, ids, positions):
        import torch

        kwargs = {"adapter_names": [r.adapter or "__base__" for r in self.rows]} if self.use_adapters else {}
        cache_name, keep_name = _argument_names(self.model)
        kwargs[cache_name] = self.cache  # updated in place
        if keep_name:
            kwargs[keep_name] = 1  # only the last position's logits: [B, V], not [B, T, V]
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=positions, use_cache=True, **kwargs)
        return out.logits[:, -1, :].float()

    def advance(self, tokens: list[int]) -> None:
        """Feed each row's new token; -> logits for the token after it."""
        import torch

        ones = torch.ones((len(self.rows), 1), dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None]
        self.logits = self._forward(ids, self.next_position[:, None])
        self.next_position = self.next_position + 1

    def select(self, keep: list[int]) -> None:
        """Keep only the rows at ``keep``; drop left columns no kept row attends to."""
        import torch

        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache = None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.mask, self.logits = self.mask[index], self.logits[index]
        self.next_position = self.next_position[index]
        self.cache.batch_select_indices(index)
        start = int(self.mask.any(dim=0).long().argmax())
        if start > 0 and _plain_dynamic(self.cache):
            self.mask = self.mask[:, start:]
            self.cache = _rebuild_cache(self.model, [(k[..., start:, :], v[..., start:, :])
                                                     for k, v in _cache_layers(self.cache)])

    def can_merge(self, other: "Batch") -> bool:
        return _plain_dynamic(self.cache) and _plain_dynamic(other.cache)

    def merge(self, other: "Batch") -> None:
        """Append ``other``'s rows; the shorter cache is left-padded (masked out)."""
        import torch

        width = max(self.mask.shape[1], other.mask.shape[1])

        def pad(tensor, dim_from_end):
            missing = width - tensor.shape[-dim_from_end]
            if missing == 0:
                return tensor
            shape = list(tensor.shape)
            shape[-dim_from_end] = missing
            return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor],
                             dim=-dim_from_end)

        layers = [(torch.cat([pad(ka, 2), pad(kb, 2)]), torch.cat([pad(va, 2), pad(vb, 2)]))
                  for (ka, va), (kb, vb) in zip(_cache_layers(self.cache), _cache_layers(other.cache))]
        self.cache = _rebuild_cache(self.model, layers)
        self.mask = torch.cat([pad(self.mask, 1), pad(other.mask, 1)])
        self.logits = torch.cat([self.logits, other.logits])
        self.next_position = torch.cat([self.next_position, other.next_position])
        self.rows = self.rows + other.rows


_ARGUMENT_NAMES: dict[type, tuple[str, str | None]] = {}


def _argument_names(model) -> tuple[str, str | None]:
    """The forward arguments for the KV cache and for keeping only the last logits, as this
    transformers version names them (``cache``/``past_key_values``; ``logits_to_keep``/
    ``num_logits_to_keep``/none)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if type(base) not in _ARGUMENT_NAMES:
        names = inspect.signature(base.forward).parameters
        cache = "cache" if "cache" in names else "past_key_values"
        keep = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in names), None)
        _ARGUMENT_NAMES[type(base)] = (cache, keep)
    return _ARGUMENT_NAMES[type(base)]


def _new_cache(model):
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _cache_layers(cache) -> list[tuple]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _plain_dynamic(cache) -> bool:
    """Only full-attention layers can be padded and joined (sliding windows cannot)."""
    from transformers.cache_utils import DynamicLayer

    return cache is not None and all(type(layer) is DynamicLayer for layer in cache.layers)


def _rebuild_cache(model, layers):
    """A cache of plain full-attention layers holding ``layers`` [(keys, values)]."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k, v) for k, v in layers])
