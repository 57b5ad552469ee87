"""Rollout, vLLM backend: same rows as :func:`bgit.pipeline.rollout.rollout`, sampled by vLLM.

``model`` is a ``vllm.LLM`` or a model directory (a ``ResolvedModel``, ``str`` or
``Path``) from which one is built. Per stim, one request with
``SamplingParams(n=num_traj, temperature, max_tokens, seed, logprobs=K)``.

Which log-probs vLLM returns: the engine is built with ``logprobs_mode="raw_logprobs"``
(vLLM >= 0.10.2), i.e. log_softmax of the raw logits before temperature, penalties and
top-k/p: exactly the teacher distribution at temperature 1 that the trainer needs. Older
vLLM versions return the log-probs of the *processed* distribution, so with those the
backend refuses a temperature other than 1. vLLM adds the sampled token to the top-K when
it falls outside; entries are therefore filtered by ``rank <= K`` and sorted by rank.
Tail: ``log(1 - sum exp(top-K))``, floored like the HF backend.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from bgit.pipeline.records import encode_array
from bgit.pipeline.rollout import TAIL_FLOOR, RolloutError, build_jobs


def make_llm(model_dir, *, dtype="auto", max_logprobs=20, seed=0, **engine_args):
    """A ``vllm.LLM`` that returns raw (temperature-1) log-probs when the version allows."""
    from vllm import LLM, EngineArgs

    args = dict(model=str(model_dir), dtype=dtype, seed=seed, max_logprobs=max(20, max_logprobs), **engine_args)
    if "logprobs_mode" in inspect.signature(EngineArgs).parameters:
        args["logprobs_mode"] = "raw_logprobs"
    return LLM(**args)


def _raw_logprobs(llm) -> bool:
    config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    mode = getattr(config, "logprobs_mode", "")  # an enum in some versions, a string in others
    return "raw_logprobs" in str(getattr(mode, "value", mode)).lower()


def rollout(model, tokenizer, stims, prompt, target, *, seed, batch_size=16, progress=None) -> list[dict]:
    from vllm import SamplingParams

    if not stims:
        raise RolloutError("no stims to roll out")
    llm = model if hasattr(model, "generate") and hasattr(model, "llm_engine") else make_llm(
        getattr(model, "path", model), max_logprobs=target.top_k, seed=seed
    )
    if target.temperature not in (0, 1) and not _raw_logprobs(llm):
        raise RolloutError("this vLLM returns processed log-probs; use temperature 1, vLLM >= 0.10.2, or --backend hf")
    tokenizer = tokenizer or llm.get_tokenizer()
    n = target.num_traj_per_stimulus
    jobs = build_jobs(tokenizer, stims, prompt, target)[::n]  # one request per stim, n samples each
    requests = [{"prompt_token_ids": job.context} for job in jobs]
    params = [
        SamplingParams(
            n=n,
            temperature=float(target.temperature),
            top_p=1.0,
            top_k=-1 if target.temperature > 0 else 1,
            max_tokens=target.max_tokens,
            seed=seed * 1_000_003 + number,  # per request: independent of batching
            logprobs=target.top_k,
        )
        for number in range(len(jobs))
    ]
    outputs = llm.generate(requests, params, use_tqdm=False)
    rows = []
    for job, output in zip(jobs, outputs):
        for traj, completion in enumerate(sorted(output.outputs, key=lambda c: c.index)):
            rows.append(_row(tokenizer, job, traj, completion, target.top_k))
        if progress is not None:
            progress(n * target.max_tokens, len(jobs) * n * target.max_tokens, phase="rollout")
    return rows


def _row(tokenizer, job, traj, completion, k) -> dict:
    response = [int(t) for t in completion.token_ids]
    ids = np.zeros((len(response), k), dtype=np.int32)
    logprobs = np.full((len(response), k), TAIL_FLOOR, dtype=np.float32)  # if vLLM sent fewer than K
    tail = np.zeros(len(response), dtype=np.float32)
    for position, entries in enumerate(completion.logprobs or []):
        ranked = sorted(
            ((lp.rank, token, lp.logprob) for token, lp in entries.items() if lp.rank is not None and lp.rank <= k)
        )[:k]
        for column, (_, token, value) in enumerate(ranked):
            ids[position, column] = token
            logprobs[position, column] = value
        mass = float(np.exp(logprobs[position].astype(np.float64)).sum())
        tail[position] = max(TAIL_FLOOR, math.log1p(-mass)) if mass < 1.0 else TAIL_FLOOR
    return {
        "stim_id": job.stim["id"],
        "stim": job.stim["text"],
        "traj": traj,
        "response": tokenizer.decode(response, skip_special_tokens=True),
        "response_ids": response,
        "k": k,
        "topk_ids": encode_array(ids),
        "topk_logprobs": encode_array(logprobs),
        "tail_logprob": encode_array(tail),
    }
