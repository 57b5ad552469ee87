"""The built-in backend: transformers + PEFT on the machine's CPU or one GPU.

The base model is loaded once and wrapped in one PeftModel holding every adapter in use; the
:class:`~bgit.serve.engine.Engine` thread generates, the asyncio side only waits for its events.
"""

from __future__ import annotations

from typing import AsyncIterator

from bgit.serve.backend import EventChannel, GenerationRequest, ServeBackend, StreamEvent
from bgit.serve.batch import Row
from bgit.serve.decoding import IncrementalText, make_generator


class HFBackend(ServeBackend):
    name = "hf"

    def __init__(self, registry, device: str | None = None, dtype: str = "auto", max_batch: int = 16,
                 max_loaded: int = 8, batch_window: float = 0.01) -> None:
        from bgit.evaluate.models import load_base, with_adapter
        from bgit.serve.engine import Adapters, Engine

        with registry.lock:
            first = registry.resolve(registry.first_bake.ref)
            model, tokenizer, self.notes = load_base(registry.first_bake, device=device, dtype=dtype)
        super().__init__(registry, tokenizer, _max_context(model, tokenizer))
        peft_model = with_adapter(model, first.adapter_dir, name=first.adapter_name)
        adapters = Adapters(peft_model, first.adapter_name, max_loaded)
        for name, _ in registry.served_refs():  # the served tips, before any request
            served = registry.resolve(name)
            if len(adapters.used) < max_loaded or served.adapter_name in adapters.used:
                adapters.ensure(served.adapter_name, served.adapter_dir)
        self.engine = Engine(peft_model, tokenizer, adapters, self.max_context, max_batch=max_batch,
                             batch_window=batch_window)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        channel = EventChannel()
        params = request.params
        row = Row(prompt_ids=list(request.prompt_ids), adapter=request.model.adapter_name, params=params,
                  text=IncrementalText(self.tokenizer, params.stop),
                  generator=make_generator(params.seed, self.engine.device), emit=channel.emit)
        self.engine.submit(row, request.model.adapter_dir)
        try:
            async for event in channel.events():
                yield event
        finally:
            row.cancelled = True  # a no-op once finished; else the engine drops the row at its next step

    def stats(self) -> dict:
        return self.engine.stats()

    def close(self) -> None:
        self.engine.close()


def _max_context(model, tokenizer) -> int:
    """Positions the model was trained for (the tokenizer's limit when that is smaller)."""
    limits = [getattr(model.config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    usable = [int(v) for v in limits if isinstance(v, int) and 0 < v < 10**7]
    return min(usable) if usable else 2048
