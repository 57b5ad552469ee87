"""Training examples, truncation, length-aware micro-batching and collation.

A sequence is ``student_ids + response_ids`` (id lists concatenated, never re-tokenised).
Logits at position p predict token p+1, so response token i is scored by the logits at
position ``len(student_ids) + i - 1``; the last response token is never an input, so the
fed sequence is ``student_ids + response_ids[:-1]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from bgit.train.errors import InvalidExampleError


@dataclass
class TrainExample:
    student_ids: list[int]
    response_ids: list[int]
    topk_ids: np.ndarray | None  # [T, K] int32: teacher's top-K ids for response token i
    topk_logprobs: np.ndarray | None  # [T, K] float32
    tail_logprob: np.ndarray | None  # [T] float32: log(1 - sum top-K p)
    teacher_ids: list[int] | None = None  # teacher context, needed by loss="full"
    weight: float = 1.0


@dataclass
class PreparedExample:
    """An example after validation and truncation to max_length."""

    input_ids: list[int]  # student_ids + response_ids[:n - 1]
    n_student: int
    n_response: int
    topk_ids: np.ndarray | None
    topk_logprobs: np.ndarray | None
    tail_logprob: np.ndarray | None
    teacher_input_ids: list[int] | None
    n_teacher: int
    weight: float


def prepare_examples(examples, max_length: int, need_topk: bool, need_teacher: bool) -> list[PreparedExample]:
    return [_prepare(i, ex, max_length, need_topk, need_teacher) for i, ex in enumerate(examples)]


def _prepare(index: int, ex: TrainExample, max_length: int, need_topk: bool, need_teacher: bool) -> PreparedExample:
    n_student, n_total = len(ex.student_ids), len(ex.response_ids)
    if n_student == 0:
        raise InvalidExampleError(index, "empty student context (it must at least hold the generation prompt)")
    if n_total == 0:
        raise InvalidExampleError(index, "empty response")
    if ex.weight < 0:
        raise InvalidExampleError(index, f"negative weight {ex.weight}")
    if n_student >= max_length:
        raise InvalidExampleError(
            index, f"student context has {n_student} tokens, max_length is {max_length}; raise BAKE.data.max_length"
        )
    n = min(n_total, max_length - n_student)  # truncate the response tail, never the context
    topk_ids = topk_logprobs = tail = None
    if need_topk:
        if ex.topk_ids is None or ex.topk_logprobs is None or ex.tail_logprob is None:
            raise InvalidExampleError(index, "missing teacher top-K arrays (needed by loss=topk)")
        topk_ids, topk_logprobs = np.asarray(ex.topk_ids), np.asarray(ex.topk_logprobs)
        tail = np.asarray(ex.tail_logprob)
        if topk_ids.ndim != 2 or topk_ids.shape[0] != n_total or topk_logprobs.shape != topk_ids.shape:
            raise InvalidExampleError(
                index, f"top-K arrays have shapes {topk_ids.shape}/{topk_logprobs.shape}, expected [{n_total}, K]"
            )
        if tail.shape != (n_total,):
            raise InvalidExampleError(index, f"tail_logprob has shape {tail.shape}, expected [{n_total}]")
        topk_ids = topk_ids[:n].astype(np.int64)
        topk_logprobs, tail = topk_logprobs[:n].astype(np.float32), tail[:n].astype(np.float32)
    teacher_input = None
    if need_teacher:
        if not ex.teacher_ids:
            raise InvalidExampleError(index, "missing teacher_ids (needed by loss=full)")
        teacher_input = list(ex.teacher_ids) + list(ex.response_ids[: n - 1])
    return PreparedExample(
        input_ids=list(ex.student_ids) + list(ex.response_ids[: n - 1]),
        n_student=n_student,
        n_response=n,
        topk_ids=topk_ids,
        topk_logprobs=topk_logprobs,
        tail_logprob=tail,
        teacher_input_ids=teacher_input,
        n_teacher=len(ex.teacher_ids) if need_teacher else 0,
        weight=float(ex.weight),
    )


def examples_fingerprint(examples) -> str:
    """A hash of every id and array, so a checkpoint is never resumed on other data."""
    h = hashlib.sha256()
    for ex in examples:
        for ids in (ex.student_ids, ex.response_ids, ex.teacher_ids or []):
            h.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
        for arr in (ex.topk_ids, ex.topk_logprobs, ex.tail_logprob):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes() + b"|")
        h.update(repr(float(ex.weight)).encode() + b"#")
    return h.hexdigest()


# ---------------------------------------------------------------------------- batching


def epoch_groups(n_examples: int, group_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled example indices cut into optimizer-step groups.

    The order depends only on (seed, epoch), so a resumed run sees the same order, and the
    examples of an optimizer step do not depend on how the step is split into micro-batches.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n_examples).tolist()
    return [order[i : i + group_size] for i in range(0, n_examples, group_size)]


# Logit floats per no-gradient batch (the eval's KL passes, the in-training eval, teacher
# forcing): each [N, V] float32 array of one takes 64 MiB (SmolLM2: N = 341 response tokens),
# and a KL holds a handful of them. Measured on the french eval (64 held-out stims, 2 cores,
# bench/results/2026-12-01-x86_64-epyc-2core/eval-batch-sizes.txt): 57 s at this size, 80 s
# at a quarter of it, 70 s at four times it, 111 s one item at a time.
BATCH_LOGITS = 1 << 24


def vocab_size(model) -> int:
    """The width of the model's logits (under ZeRO-3 a weight's own shape is empty)."""
    weight = model.get_output_embeddings().weight
    return int((getattr(weight, "ds_shape", None) or weight.shape)[0])


def token_chunks(lengths: list[int], vocab: int, min_items: int = 1) -> list[range]:
    """Consecutive index ranges whose response tokens (``lengths``) give at most BATCH_LOGITS
    logits, and that hold ``min_items`` indices at least (the last one may hold fewer)."""
    budget = max(1, BATCH_LOGITS // vocab)
    chunks, start, tokens = [], 0, 0
    for index, length in enumerate(lengths):
        if index - start >= min_items and tokens + length > budget:
            chunks.append(range(start, index))
            start, tokens = index, 0
        tokens += length
    if lengths:
        chunks.append(range(start, len(lengths)))
    return chunks


def micro_batches(group: list[int], items: list[PreparedExample], size: int) -> list[list[int]]:
    """Split one step's examples into micro-batches of similar length (less padding)."""
    by_length = sorted(group, key=lambda i: (len(items[i].input_ids), i))
    return [by_length[i : i + size] for i in range(0, len(by_length), size)]


@dataclass
class Batch:
    input_ids: "torch.Tensor"  # [B, L] right-padded
    attention_mask: "torch.Tensor"  # [B, L]
    rows: "torch.Tensor"  # [N] batch row of each response token
    cols: "torch.Tensor"  # [N] position whose logits predict that token
    weights: "torch.Tensor"  # [N] example weight per response token
    topk_ids: "torch.Tensor | None"  # [N, K]
    topk_logprobs: "torch.Tensor | None"  # [N, K]
    tail_logprob: "torch.Tensor | None"  # [N]
    teacher_input_ids: "torch.Tensor | None" = None  # [B, L'] after teacher_prefix_ids
    teacher_attention_mask: "torch.Tensor | None" = None  # [B, L'], teacher_input_ids' own
    teacher_cols: "torch.Tensor | None" = None  # [N] in teacher_input_ids
    teacher_prefix_ids: "torch.Tensor | None" = None  # [1, P]: tokens every teacher row starts with

    @property
    def n_tokens(self) -> int:
        return int(self.rows.shape[0])


def pad_right(seqs: list[list[int]], pad_id: int):
    """-> (ids [B, L], attention mask [B, L]) of the sequences, right-padded with pad_id."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def teacher_prefix(model, items: list[PreparedExample]) -> int:
    """How many first teacher tokens the items share and ``model`` can run once for all of them
    (0 when they need no teacher pass, as loss="topk", or share too few)."""
    from bgit.train.prefix import shared_prefix

    if items[0].teacher_input_ids is None:
        return 0
    return shared_prefix(model, [it.teacher_input_ids[: it.n_teacher] for it in items])


def collate(items: list[PreparedExample], pad_id: int, device, teacher_prefix: int = 0) -> Batch:
    """The items as one batch. ``teacher_prefix``: the number of first teacher tokens that every
    item shares (:func:`teacher_prefix`), held once in ``teacher_prefix_ids``."""
    import torch

    ids, mask = pad_right([it.input_ids for it in items], pad_id)
    rows = torch.cat([torch.full((it.n_response,), r, dtype=torch.long) for r, it in enumerate(items)])
    cols = torch.cat([torch.arange(it.n_response) + it.n_student - 1 for it in items])
    weights = torch.cat([torch.full((it.n_response,), it.weight, dtype=torch.float32) for it in items])
    batch = Batch(ids, mask, rows, cols, weights, None, None, None)
    if items[0].topk_ids is not None:
        batch.topk_ids = torch.from_numpy(np.concatenate([it.topk_ids for it in items]))
        batch.topk_logprobs = torch.from_numpy(np.concatenate([it.topk_logprobs for it in items]))
        batch.tail_logprob = torch.from_numpy(np.concatenate([it.tail_logprob for it in items]))
    if items[0].teacher_input_ids is not None:
        own = [it.teacher_input_ids[teacher_prefix:] for it in items]
        batch.teacher_input_ids, batch.teacher_attention_mask = pad_right(own, pad_id)
        batch.teacher_cols = torch.cat([torch.arange(it.n_response) + it.n_teacher - teacher_prefix - 1
                                        for it in items])
        if teacher_prefix:
            batch.teacher_prefix_ids = torch.tensor([items[0].teacher_input_ids[:teacher_prefix]], dtype=torch.long)
    for name, value in vars(batch).items():
        if value is not None:
            setattr(batch, name, value.to(device, non_blocking=True))
    return batch
