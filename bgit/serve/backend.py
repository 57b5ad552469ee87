"""The interface between the HTTP layer and whatever runs the model.

The HTTP layer (:mod:`bgit.serve.app`) parses an OpenAI request, resolves its ``model`` through
the :class:`~bgit.serve.registry.BakeRegistry`, renders the prompt to token ids with bgit's chat
rules (:mod:`bgit.serve.openai_api`) and hands a :class:`GenerationRequest` to a
:class:`ServeBackend`. A backend only generates:

- :class:`bgit.serve.hf.HFBackend`: transformers + PEFT, every adapter loaded into one model
  and chosen per row of a batch (``adapter_names=``), batching in one worker thread.
- :class:`bgit.serve.vllm.VLLMServeBackend`: vLLM's async engine, one ``LoRARequest`` per
  adapter directory, the same token ids as the prompt, ``abort`` when the stream is closed.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import AsyncIterator

from bgit.serve.registry import ServedModel


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0          # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None           # None: a fresh random seed
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False          # vLLM's extension: generate max_tokens tokens whatever comes


@dataclass
class GenerationRequest:
    model: ServedModel
    prompt_ids: list[int]
    params: SamplingParams


@dataclass
class StreamEvent:
    """New text of one generation; the last event has ``finish_reason`` ("stop" | "length")."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None


@dataclass
class Generation:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    model: ServedModel = field(default_factory=lambda: ServedModel("base"))


class EventChannel:
    """Stream events from an engine (its thread or its own event loop) to the request's loop.
    Create it in the request's coroutine; the engine calls :meth:`emit`, with a StreamEvent
    or an exception that ends the request."""

    def __init__(self) -> None:
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()

    def emit(self, event) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the request's loop has closed: nobody is listening any more
            pass

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The events up to the last one (``finish_reason`` set); an emitted exception is raised."""
        while True:
            event = await self._queue.get()
            if isinstance(event, Exception):
                raise event
            yield event
            if event.finish_reason is not None:
                return


class ServeBackend(ABC):
    """Lists the served models and generates for resolved requests. ``stream`` is an async
    generator; closing it early (a client that went away) must stop the generation and free
    its slot. ``tokenizer`` renders prompts; ``max_context`` bounds prompt + completion."""

    name = ""  # what `bgit serve --backend` calls it

    def __init__(self, registry, tokenizer, max_context: int) -> None:
        self.registry, self.tokenizer, self.max_context = registry, tokenizer, max_context

    def list_models(self) -> list[str]:
        return self.registry.names()

    @abstractmethod
    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        ...

    async def generate(self, request: GenerationRequest) -> Generation:
        parts, finish, tokens = [], "stop", 0
        stream = self.stream(request)
        try:
            async for event in stream:
                parts.append(event.text)
                tokens = event.completion_tokens
                finish = event.finish_reason or finish
        finally:
            await stream.aclose()
        return Generation("".join(parts), finish, len(request.prompt_ids), tokens, request.model)

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        """Stop generating (the server is shutting down)."""
