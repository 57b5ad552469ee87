"""One test suite for every rollout backend: HF (tests/test_rollout.py) and vLLM
(tests/backend_vllm/, in .venv-vllm), like dulwich's ObjectStoreTests.

A subclass provides three fixtures: ``backend`` (a RolloutBackend), ``reference`` (the
teacher as a transformers (model, tokenizer), for a fresh unpadded forward pass per row) and
``stims``; and may tighten or loosen the tolerances below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgit.config.schema import PromptConfig, TargetConfig
from bgit.models import render_context
from bgit.pipeline.records import RolloutRecord

PROMPT = PromptConfig(teacher_messages=[{"role": "system", "content": "You are a pirate. Answer in pirate speak."}])


@dataclass
class Agreement:
    """How close a backend's top-K rows are to a reference's on the same trajectories."""

    positions: int
    max_logprob_diff: float  # on ids both top-K sets hold
    min_overlap: float  # |ids shared| / K, worst position
    mean_overlap: float
    top1_agreement: float
    max_tail_prob_diff: float  # |exp(tail) - exp(tail')|

    @classmethod
    def of(cls, records, references) -> "Agreement":
        diffs, overlaps, top1, tails = [], [], [], []
        for record, (ids, logprobs, tail) in zip(records, references):
            for position in range(len(record.response_ids)):
                ours = dict(zip(record.topk_ids[position].tolist(), record.topk_logprobs[position].tolist()))
                theirs = dict(zip(ids[position].tolist(), logprobs[position].tolist()))
                shared = ours.keys() & theirs.keys()
                overlaps.append(len(shared) / record.k)
                diffs.append(max(abs(ours[i] - theirs[i]) for i in shared))
                top1.append(record.topk_ids[position][0] == ids[position][0])
                tails.append(abs(np.exp(float(record.tail_logprob[position])) - np.exp(float(tail[position]))))
        return cls(len(diffs), max(diffs), min(overlaps), float(np.mean(overlaps)), float(np.mean(top1)),
                   float(max(tails)))


def fresh_reference(model, tokenizer, row, messages, k):
    """Top-K ids, log-probs and exact tail of every response position, one unpadded forward pass."""
    import torch

    context = render_context(tokenizer, messages, user=row["stim"])
    with torch.no_grad():
        logits = model(torch.tensor([context + row["response_ids"]])).logits[0].float()
    start = len(context) - 1  # logits at position p predict token p + 1
    logprobs = torch.log_softmax(logits, -1)[start : start + len(row["response_ids"])]
    top, ids = logprobs.topk(k, dim=-1)
    tail = torch.logsumexp(logprobs.scatter(-1, ids, float("-inf")), dim=-1)
    return ids.numpy(), top.numpy(), tail.numpy()


class RolloutBackendContract:
    """Collected through subclasses named Test*; the tolerances are against ``fresh_reference``."""

    LOGPROB_ATOL = 1e-4
    TAIL_PROB_ATOL = 1e-5
    MIN_OVERLAP = 19 / 20  # a near-tie at rank K may swap one id
    MEAN_OVERLAP = 0.995
    MAX_TOKENS = 16
    TOP_K = 20
    RERUN_LOGPROB_ATOL = 1e-5  # the same rollout twice, same seed

    def agreement(self, rows, reference) -> Agreement:
        model, tokenizer = reference
        records = [RolloutRecord.from_row(row) for row in rows]
        references = [fresh_reference(model, tokenizer, row, PROMPT.teacher_messages, record.k)
                      for row, record in zip(rows, records)]
        return Agreement.of(records, references)

    def assert_close(self, measured: Agreement) -> None:
        assert measured.positions > 0
        assert measured.max_logprob_diff <= self.LOGPROB_ATOL, measured
        assert measured.min_overlap >= self.MIN_OVERLAP and measured.mean_overlap >= self.MEAN_OVERLAP, measured
        assert measured.max_tail_prob_diff <= self.TAIL_PROB_ATOL, measured

    def report(self, name: str, measured: Agreement) -> None:
        """Backends may print what they measured (the tolerances above come from it)."""

    def test_rows_are_the_teachers_top_k_on_its_own_samples(self, backend, reference, stims):
        _, tokenizer = reference
        target = TargetConfig(max_tokens=self.MAX_TOKENS, temperature=1.0, num_traj_per_stimulus=2, top_k=self.TOP_K)
        rows = backend.rollout(stims, PROMPT, target, seed=0)
        assert [(row["stim_id"], row["stim"], row["traj"]) for row in rows] == \
            [(s["id"], s["text"], t) for s in stims for t in (0, 1)]
        eos = tokenizer.eos_token_id
        for row in rows:
            record = RolloutRecord.from_row(row)
            ids = row["response_ids"]
            assert 1 <= len(ids) <= self.MAX_TOKENS and record.topk_ids.shape == (len(ids), self.TOP_K)
            assert eos not in ids[:-1] and (ids[-1] == eos or len(ids) == self.MAX_TOKENS)  # EOS kept, last
            assert row["response"] == tokenizer.decode(ids, skip_special_tokens=True)
            assert np.all(np.diff(record.topk_logprobs, axis=1) <= 0)  # sorted by rank
            total = np.logaddexp.reduce(np.concatenate([record.topk_logprobs, record.tail_logprob[:, None]], 1), 1)
            np.testing.assert_allclose(total, 0.0, atol=1e-4)  # top-K + tail is the whole distribution
        assert len({tuple(row["response_ids"]) for row in rows}) == len(rows)  # every trajectory its own
        measured = self.agreement(rows, reference)
        self.report("temperature 1", measured)
        self.assert_close(measured)

    def test_log_probs_are_the_raw_temperature_1_teacher_whatever_the_sampling_temperature(
            self, backend, reference, stims):
        target = TargetConfig(max_tokens=self.MAX_TOKENS, temperature=0.5, num_traj_per_stimulus=1, top_k=self.TOP_K)
        rows = backend.rollout(stims[:2], PROMPT, target, seed=3)
        measured = self.agreement(rows, reference)
        self.report("sampled at temperature 0.5", measured)
        self.assert_close(measured)  # processed (temperature-0.5) log-probs would be far off

    def test_same_seed_same_rows_other_seed_other_samples(self, backend, stims):
        target = TargetConfig(max_tokens=12, temperature=1.0, num_traj_per_stimulus=2, top_k=5)
        first = backend.rollout(stims[:2], PROMPT, target, seed=5)
        again = backend.rollout(stims[:2], PROMPT, target, seed=5)
        other = backend.rollout(stims[:2], PROMPT, target, seed=6)
        assert [r["response_ids"] for r in again] == [r["response_ids"] for r in first]
        for a, b in zip(first, again):
            np.testing.assert_allclose(RolloutRecord.from_row(a).topk_logprobs,
                                       RolloutRecord.from_row(b).topk_logprobs, atol=self.RERUN_LOGPROB_ATOL)
        assert [r["response_ids"] for r in other] != [r["response_ids"] for r in first]
