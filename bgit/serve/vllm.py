"""The vLLM backend: vLLM's async engine (``AsyncLLM``) with every served bake as a LoRA module.

The engine is built from the base model's directory (:func:`bgit.models.vllm_model_dir`: no
GGUF ``quantization_config``) with ``enable_lora=True`` and ``max_lora_rank`` the largest rank
among the served bakes' adapters, rounded up to a rank vLLM accepts. Each adapter is one
``LoRARequest(bake_<content digest>, id, adapter dir)``: one adapter committed twice is one
LoRA, and a branch that moves to a new bake gets a new id (requests in flight keep theirs:
their ``ServedModel`` was resolved when they started).

Prompts are the token ids bgit's renderer made (the HTTP layer's, as for the HF backend);
the text of a stream is vLLM's detokenised, cumulative text cut into deltas. A stream that is
closed early (the client went away) aborts its vLLM request.

The engine lives in its own thread and event loop: vLLM's async engine belongs to the loop
it was made in, and the HTTP server may run one loop per server (tests run two on one
backend). Requests cross over with ``run_coroutine_threadsafe``; events come back with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import uuid
from typing import AsyncIterator

from bgit.serve.backend import EventChannel, GenerationRequest, ServeBackend, StreamEvent
from bgit.serve.errors import APIError, ServeBackendError

log = logging.getLogger("bgit.serve")
FINISH_REASONS = {"stop": "stop", "length": "length", "repetition": "stop"}


class VLLMServeBackend(ServeBackend):
    name = "vllm"

    def __init__(self, registry, dtype: str = "auto", max_batch: int = 16, max_loaded: int = 8,
                 engine_args: dict | None = None) -> None:
        from bgit.models import ModelError, load_tokenizer
        from bgit.models.vllm_engine import adapter_rank, quiet_vllm_logs, vllm_lora_rank

        quiet_vllm_logs()  # before vllm is first imported
        try:
            with registry.lock:
                resolved, trust, self.notes = _base_model(registry.first_bake)
                adapters = {name: registry.resolve(name).adapter_dir for name, _ in registry.served_refs()}
            ranks = [adapter_rank(directory) for directory in adapters.values()]
            tokenizer = load_tokenizer(resolved, trust_remote_code=trust)
        except ModelError as error:
            raise ServeBackendError(str(error)) from None
        self.max_lora_rank = vllm_lora_rank(max(ranks, default=1))
        if self.max_lora_rank is None:
            raise ServeBackendError(f"a served bake has LoRA rank {max(ranks)}; vLLM serves at most rank "
                                    f"{_largest_rank()} (use --backend hf)")
        for name, directory in adapters.items():
            if refusal := vllm_refusal(directory):
                raise ServeBackendError(f"vLLM cannot serve {name}'s adapter: {refusal} (use --backend hf)")
        self._ranks: dict[str, int] = {}
        self._refusals: dict[str, str | None] = {}
        self._lora_ids: dict[str, int] = {}
        self._next_id = itertools.count(1)
        self._lock = threading.Lock()
        self._tasks: set = set()
        self._closing = False
        self.counters = {"requests": 0, "finished": 0, "cancelled": 0, "failed": 0, "tokens": 0, "peak_active": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bgit-serve-vllm", daemon=True)
        self._thread.start()
        args = self._engine_args(resolved, trust, dtype, max_batch, max_loaded, engine_args or {})
        try:
            self.engine = asyncio.run_coroutine_threadsafe(_start_engine(args), self._loop).result()
        except BaseException:
            self._stop_loop()
            raise
        super().__init__(registry, tokenizer, int(self.engine.model_config.max_model_len))

    def _engine_args(self, resolved, trust: bool, dtype: str, max_batch: int, max_loaded: int, extra: dict) -> dict:
        from bgit.models import ModelError
        from bgit.models.vllm_engine import base_engine_args, env_engine_args

        try:
            args = base_engine_args(resolved.path, dtype, trust_remote_code=trust)
            args.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=max(1, max_loaded),
                        max_cpu_loras=max(1, max_loaded), max_num_seqs=max(1, max_batch), disable_log_stats=True)
            args.update(extra)
            args.update(env_engine_args())
        except ModelError as error:
            raise ServeBackendError(str(error)) from None
        return args

    # -- any thread ------------------------------------------------------------------------

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        channel = EventChannel()
        lora = self._lora_request(request.model)
        request_id = f"bgit-{uuid.uuid4().hex}"
        try:
            future = asyncio.run_coroutine_threadsafe(self._run(request_id, request, lora, channel.emit), self._loop)
        except RuntimeError:  # the engine's loop has stopped
            raise _shutting_down() from None
        try:
            async for event in channel.events():
                yield event
        finally:
            future.cancel()  # a no-op once finished; else the engine aborts the request

    def _lora_request(self, model):
        """The LoRARequest of ``model``'s adapter (None for base): one stable id per adapter digest."""
        from vllm.lora.request import LoRARequest

        from bgit.models import ModelError
        from bgit.models.vllm_engine import adapter_rank

        if model.adapter_dir is None:
            return None
        key = model.adapter_name
        with self._lock:
            if key not in self._ranks:
                try:
                    self._ranks[key] = adapter_rank(model.adapter_dir)
                except ModelError as error:
                    raise APIError(500, str(error), type="server_error") from None
                self._refusals[key] = vllm_refusal(model.adapter_dir)
            if self._ranks[key] > self.max_lora_rank:
                raise APIError(400, f"The model `{model.name}` has LoRA rank {self._ranks[key]}; this vLLM server "
                               f"was started for rank {self.max_lora_rank} at most: restart bgit serve to serve it.",
                               param="model", code="lora_rank_too_large")
            if self._refusals[key]:
                raise APIError(400, f"vLLM cannot serve the model `{model.name}`: {self._refusals[key]} Serve it "
                               "with bgit serve --backend hf.", param="model", code="adapter_not_supported")
            lora_id = self._lora_ids.setdefault(key, next(self._next_id))
        return LoRARequest(key, lora_id, str(model.adapter_dir))

    def stats(self) -> dict:
        engine = getattr(self, "engine", None)
        active = engine.get_num_unfinished_requests() if engine is not None else 0
        return {**self.counters, "active": active, "queued": max(0, len(self._tasks) - active),
                "adapters_known": len(self._lora_ids), "max_lora_rank": self.max_lora_rank}

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=60)
        except Exception:  # shutting down anyway: vLLM's engine processes die with ours
            log.warning("vLLM did not shut down cleanly", exc_info=True)
        finally:
            self._stop_loop()

    # -- the engine's loop -----------------------------------------------------------------

    async def _run(self, request_id: str, request: GenerationRequest, lora, emit) -> None:
        if self._closing:
            emit(_shutting_down())
            return
        self._tasks.add(asyncio.current_task())
        self.counters["requests"] += 1
        sent, tokens, finished = "", 0, False
        try:
            outputs = self.engine.generate({"prompt_token_ids": list(request.prompt_ids)},
                                           _sampling_params(request.params), request_id, lora_request=lora)
            async for output in outputs:
                completion = output.outputs[0]
                self.counters["tokens"] += len(completion.token_ids) - tokens
                tokens = len(completion.token_ids)
                self.counters["peak_active"] = max(self.counters["peak_active"], self.engine.get_num_unfinished_requests())
                if not completion.text.startswith(sent):  # vLLM holds back what a stop string may cut
                    raise RuntimeError("vLLM changed text it had already returned")
                delta, sent = completion.text[len(sent):], completion.text
                finish = _finish_reason(completion.finish_reason) if output.finished else None
                if delta or finish:
                    emit(StreamEvent(delta, tokens, finish))
                finished = finished or finish is not None
            if not finished:
                raise RuntimeError("vLLM ended the request without a finish reason")
            self.counters["finished"] += 1
        except asyncio.CancelledError:
            self.counters["cancelled"] += 1
            # vLLM aborts a generation whose iteration is cancelled, but not one cancelled while it
            # was being added: abort by our id, which covers both (a no-op for an unknown id).
            await self.engine.abort(request_id)
            if self._closing:
                emit(_shutting_down())
            raise
        except Exception as error:  # a failed request (the engine died, a LoRA that does not load...)
            self.counters["failed"] += 1
            emit(_failure(error))
        finally:
            self._tasks.discard(asyncio.current_task())

    async def _shutdown(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.engine.shutdown()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _start_engine(args: dict):
    """AsyncLLM from ``args``, made in the engine's loop (its output handler runs there)."""
    try:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM
    except ImportError as error:
        raise ServeBackendError(f"vLLM could not be imported: {error}") from None
    try:
        return AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
    except Exception as error:  # vLLM raises many kinds (ValueError, RuntimeError, OSError, TypeError...)
        first_line = (str(error).splitlines() or [""])[0]
        raise ServeBackendError(f"vLLM could not start on {args.get('model')}: {type(error).__name__}: "
                                f"{first_line}") from error


def _base_model(bake):
    """-> (ResolvedModel, trust_remote_code, notes) of the served bakes' base model."""
    from bgit.evaluate.models import resolve_base, trusts_remote_code

    resolved, notes = resolve_base(bake)
    return resolved, trusts_remote_code(bake), notes


def _sampling_params(params):
    from vllm import SamplingParams

    return SamplingParams(n=1, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                          seed=params.seed, stop=list(params.stop), ignore_eos=params.ignore_eos,
                          skip_special_tokens=True)


def _finish_reason(reason) -> str:
    """OpenAI's finish reason for vLLM's; an abort we did not ask for, or vLLM's request-level
    error, fails the request."""
    reason = str(reason)
    if reason in FINISH_REASONS:
        return FINISH_REASONS[reason]
    if reason == "abort":
        raise APIError(503, "vLLM aborted the request.", type="server_error", code="aborted")
    raise APIError(500, f"vLLM ended the request with finish reason {reason!r}.", type="server_error")


def _failure(error: Exception) -> APIError:
    if isinstance(error, APIError):
        return error
    cause = error.__cause__ or error
    return APIError(500, f"generation failed: {type(cause).__name__}: {cause}", type="server_error")


def _shutting_down() -> APIError:
    return APIError(503, "The server is shutting down.", type="server_error", code="shutting_down")


def vllm_refusal(adapter_dir) -> str | None:
    """Why vLLM would refuse to load this PEFT adapter (DoRA, LoRA biases, modules_to_save, inits
    that rewrite the base, ...): vLLM's own check, with the rank left to the caller; None when
    it loads. vLLM would otherwise fail only when a request first asks for the adapter."""
    from vllm.config.lora import LoRAConfig
    from vllm.lora.peft_helper import PEFTHelper

    try:
        PEFTHelper.from_local_dir(str(adapter_dir), None).validate_legal(LoRAConfig(max_lora_rank=_largest_rank()))
    except ValueError as error:
        return str(error)
    return None


def _largest_rank() -> int:
    from bgit.models.vllm_engine import LORA_RANKS

    return LORA_RANKS[-1]
