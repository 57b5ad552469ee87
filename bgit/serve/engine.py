"""The generation loop of the built-in backend: one worker thread owns the model.

Everything that touches the model (forward passes, loading and unloading adapters) happens
in that thread, so nothing races on PEFT's state; requests choose their adapter per row
(``adapter_names=``), never through ``set_adapter``. The loop::

    admit   take waiting requests (up to max_batch rows in flight), load the adapters they
            name, prefill them as one batch and join it to the running one
    step    for every row: pick a token, deliver its text; rows that finished or whose
            client went away leave the batch; one forward pass for the rest

A request submitted while others run starts at the next step; an adapter is unloaded only
when no row uses it and more than ``max_loaded`` are loaded (least recently used first).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict

from bgit.serve.backend import StreamEvent
from bgit.serve.batch import Batch, Row
from bgit.serve.errors import APIError

log = logging.getLogger("bgit.serve")


class Adapters:
    """The adapters loaded into one PeftModel, by key (bake_<content digest>)."""

    def __init__(self, peft_model, first_key: str, max_loaded: int) -> None:
        self.model, self.max_loaded = peft_model, max(1, max_loaded)
        self.used: OrderedDict[str, float] = OrderedDict({first_key: time.monotonic()})

    def ensure(self, key: str, directory) -> None:
        if key not in self.used:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.model.load_adapter(str(directory), adapter_name=key, is_trainable=False)
            self.model.eval()
        self.used[key] = time.monotonic()
        self.used.move_to_end(key)

    def evict(self, in_use: set[str]) -> None:
        for key in list(self.used):
            if len(self.used) <= self.max_loaded:
                return
            if key not in in_use:
                self.model.delete_adapter(key)
                del self.used[key]


class Engine:
    def __init__(self, model, tokenizer, adapters: Adapters, max_context: int, max_batch: int = 16,
                 batch_window: float = 0.01) -> None:
        self.model, self.tokenizer, self.adapters = model, tokenizer, adapters
        self.max_context, self.max_batch, self.batch_window = max_context, max(1, max_batch), batch_window
        self.device = next(model.parameters()).device
        self.eos_ids = _eos_ids(model, tokenizer)
        self._pending: queue.Queue = queue.Queue()
        self._batches: list[Batch] = []
        self._closed = threading.Event()
        self.counters = {"requests": 0, "finished": 0, "cancelled": 0, "failed": 0, "steps": 0,
                         "tokens": 0, "peak_batch": 0, "merges": 0}
        self._thread = threading.Thread(target=self._run, name="bgit-serve-engine", daemon=True)
        self._thread.start()

    # -- any thread ----------------------------------------------------------------------

    def submit(self, row: Row, adapter_dir) -> Row:
        """Queue ``row``; set ``row.cancelled = True`` later to stop it."""
        if self._closed.is_set():
            raise APIError(503, "The server is shutting down.", type="server_error", code="shutting_down")
        row.eos_ids = frozenset() if row.params.ignore_eos else self.eos_ids
        self._pending.put((row, adapter_dir))
        return row

    def stats(self) -> dict:
        active = sum(len(b) for b in list(self._batches))
        return {**self.counters, "active": active, "queued": self._pending.qsize(),
                "batches": len(self._batches), "adapters_loaded": len(self.adapters.used)}

    def close(self, timeout: float = 10.0) -> None:
        self._closed.set()
        self._thread.join(timeout)

    # -- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._admit()
                for batch in list(self._batches):
                    self._step(batch)
                self._batches = [b for b in self._batches if len(b)]
                if len(self.adapters.used) > self.adapters.max_loaded:
                    self._evict()
                self.counters["peak_batch"] = max(self.counters["peak_batch"], sum(len(b) for b in self._batches))
            except Exception as error:  # a bug or out of memory: fail what runs, keep serving
                log.exception("generation failed")
                self._fail_all(error)
        self._fail_all(APIError(503, "The server is shutting down.", type="server_error", code="shutting_down"))

    def _take(self) -> list[tuple[Row, object]]:
        capacity = self.max_batch - sum(len(b) for b in self._batches)
        if capacity <= 0:
            return []
        idle = not self._batches
        try:
            first = self._pending.get(timeout=0.05) if idle else self._pending.get_nowait()
        except queue.Empty:
            return []
        if idle and self.batch_window:
            time.sleep(self.batch_window)  # requests sent together arrive a few ms apart
        taken = [first]
        while len(taken) < capacity:
            try:
                taken.append(self._pending.get_nowait())
            except queue.Empty:
                break
        return taken

    def _admit(self) -> None:
        rows = []
        for row, adapter_dir in self._take():
            self.counters["requests"] += 1
            if row.cancelled:
                self.counters["cancelled"] += 1
                continue
            try:
                if row.adapter is not None:
                    self.adapters.ensure(row.adapter, adapter_dir)
            except Exception as error:
                self.counters["failed"] += 1
                row.emit(APIError(500, f"could not load the adapter {adapter_dir}: {error}", type="server_error"))
                continue
            rows.append(row)
        if not rows:
            return
        try:
            batch = Batch(self.model, rows, self.device, use_adapters=True)
        except Exception as error:  # e.g. out of memory on a long prompt: only these rows fail
            log.exception("prefill failed")
            for row in rows:
                row.emit(_failure(error))
            return
        if self._batches and self._batches[0].can_merge(batch):
            self._batches[0].merge(batch)
            self.counters["merges"] += 1
        else:
            self._batches.append(batch)

    def _step(self, batch: Batch) -> None:
        from bgit.serve.decoding import choose_token

        keep, tokens = [], []
        for i, row in enumerate(batch.rows):
            if row.cancelled:
                self.counters["cancelled"] += 1
                continue
            token = choose_token(batch.logits[i], row.params.temperature, row.params.top_p, row.generator)
            self._deliver(row, token)
            self.counters["tokens"] += 1
            if row.finish_reason is None:
                keep.append(i)
                tokens.append(token)
        self.counters["steps"] += 1
        batch.select(keep)
        if len(batch):
            batch.advance(tokens)

    def _deliver(self, row: Row, token: int) -> None:
        row.tokens.append(token)
        count = len(row.tokens)
        if token in row.eos_ids:
            text, row.finish_reason = row.text.finish(), "stop"
        else:
            text = row.text.push(token)
            if row.text.stopped:
                row.finish_reason = "stop"
            elif count >= row.params.max_tokens or len(row.prompt_ids) + count >= self.max_context:
                text, row.finish_reason = text + row.text.finish(), "length"
        if row.finish_reason is not None:
            self.counters["finished"] += 1
        if text or row.finish_reason:
            row.emit(StreamEvent(text, count, row.finish_reason))

    def _evict(self) -> None:
        in_use = {row.adapter for batch in self._batches for row in batch.rows if row.adapter}
        self.adapters.evict(in_use)

    def _fail_all(self, error: Exception) -> None:
        failure = _failure(error)
        for batch in self._batches:
            for row in batch.rows:
                row.emit(failure)
        self._batches = []
        while True:
            try:
                row, _ = self._pending.get_nowait()
            except queue.Empty:
                break
            row.emit(failure)


def _failure(error: Exception) -> APIError:
    if isinstance(error, APIError):
        return error
    return APIError(500, f"generation failed: {type(error).__name__}: {error}", type="server_error")


def _eos_ids(model, tokenizer) -> frozenset:
    ids = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, config_eos):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)
