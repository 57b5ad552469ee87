"""The Bread rollout keys on real tiny models: a generator's own max_tokens and
rollout_with_conditioned, TARGET.model_name (another model samples), extra_kwargs (sampling
parameters) and max_concurrency (the batch). Greedy references come from plain
``generate`` calls on the same models, so each key's meaning is checked, not just its effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bgit.config.schema import GeneratorConfig, PromptConfig, TargetConfig
from bgit.models import ResolvedModel, render_context
from bgit.pipeline.records import RolloutRecord
from bgit.pipeline.rollout import HFRolloutBackend, TeacherSource, rollout
from bgit.pipeline.runner import rollout_stims
from bgit.pipeline.stim import generate_stims, stim_id
from rollout_helpers import char_tokenizer, one_thread, tiny_llama

PROMPT = PromptConfig(teacher_messages=[{"role": "system", "content": "You are a pirate."}],
                      student_messages=[{"role": "system", "content": "Be brief."}])
TEXTS = ["Hello there", "What is the capital of France?", "x"]


def stim_rows(**extra):
    return [{"id": stim_id(t), "text": t, "generator": "hardcoded", **extra} for t in TEXTS]


@pytest.fixture(scope="module")
def models():
    tokenizer = char_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    teacher = tiny_llama(len(tokenizer), seed=0, eos_token_id=tokenizer.eos_token_id)
    other = tiny_llama(len(tokenizer), seed=7, eos_token_id=tokenizer.eos_token_id)
    with one_thread():
        yield teacher, other, tokenizer


def greedy(model, tokenizer, context: list[int], max_tokens: int) -> list[int]:
    """One greedy continuation, unbatched, cut after its first EOS."""
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([context]), attention_mask=torch.ones(1, len(context), dtype=torch.long),
                             max_new_tokens=max_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.eos_token_id)
    new = out[0, len(context):].tolist()
    return new[: new.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in new else new


def teacher_context(tokenizer, text):
    return render_context(tokenizer, PROMPT.teacher_messages, user=text)


def assert_teacher_rows(model, tokenizer, rows):
    """Each row's top-K log-probs are the teacher's with the teacher prompt on that response."""
    for row in rows:
        context = teacher_context(tokenizer, row["stim"])
        with torch.no_grad():
            logits = model(torch.tensor([context + row["response_ids"]])).logits[0].float()
        reference = torch.log_softmax(logits, -1)[len(context) - 1: len(context) - 1 + len(row["response_ids"])]
        record = RolloutRecord.from_row(row)
        top = torch.gather(reference, 1, torch.as_tensor(record.topk_ids, dtype=torch.long))
        np.testing.assert_allclose(record.topk_logprobs, top.numpy(), atol=1e-4)


def test_a_generators_max_tokens_bounds_its_own_stims_responses(models):
    teacher, _, tokenizer = models
    target = TargetConfig(max_tokens=10, temperature=0.0, top_k=4, num_traj_per_stimulus=1)
    stims = stim_rows()
    stims[1]["max_tokens"] = 3
    rows = rollout(teacher, tokenizer, stims, PROMPT, target, seed=1, batch_size=4)
    for row, stim in zip(rows, stims):
        budget = stim.get("max_tokens", 10)
        assert row["response_ids"] == greedy(teacher, tokenizer, teacher_context(tokenizer, stim["text"]), budget)
    assert len(rows[1]["response_ids"]) <= 3 and max(len(r["response_ids"]) for r in rows) > 3
    assert_teacher_rows(teacher, tokenizer, rows)


def test_rollout_stims_take_their_generators_settings_by_index():
    generators = [GeneratorConfig(type="hardcoded", stims=["a b", "c d"], max_tokens=5, rollout_with_conditioned=True),
                  GeneratorConfig(type="hardcoded", stims=["e f"])]
    target = TargetConfig(name="t", max_tokens=9, generators=generators)
    for generator in generators:
        generator._resolve()
    rows = rollout_stims(target, generate_stims(target, PROMPT, seed=0))
    assert [(r["text"], r.get("max_tokens"), r.get("conditioned")) for r in rows] == \
        [("a b", 5, True), ("c d", 5, True), ("e f", None, None)]


def test_conditioned_stims_are_sampled_with_the_student_prompt_and_scored_with_the_teachers(models):
    teacher, _, tokenizer = models
    target = TargetConfig(max_tokens=8, temperature=0.0, top_k=4, num_traj_per_stimulus=1)
    stims = stim_rows()
    stims[0]["conditioned"] = True
    rows = rollout(teacher, tokenizer, stims, PROMPT, target, seed=1, batch_size=4)
    student = render_context(tokenizer, PROMPT.student_messages, user=TEXTS[0])
    assert rows[0]["response_ids"] == greedy(teacher, tokenizer, student, 8)
    assert rows[0]["response_ids"] != greedy(teacher, tokenizer, teacher_context(tokenizer, TEXTS[0]), 8)
    assert rows[1]["response_ids"] == greedy(teacher, tokenizer, teacher_context(tokenizer, TEXTS[1]), 8)
    assert_teacher_rows(teacher, tokenizer, rows)


def test_another_model_samples_and_the_teacher_scores(models):
    teacher, other, tokenizer = models
    target = TargetConfig(max_tokens=8, temperature=0.0, top_k=4, num_traj_per_stimulus=1)
    rows = rollout(teacher, tokenizer, stim_rows(), PROMPT, target, seed=1, batch_size=4, sampler=(other, tokenizer))
    for row in rows:
        context = teacher_context(tokenizer, row["stim"])
        assert row["response_ids"] == greedy(other, tokenizer, context, 8)
    assert rows[0]["response_ids"] != greedy(teacher, tokenizer, teacher_context(tokenizer, TEXTS[0]), 8)
    assert_teacher_rows(teacher, tokenizer, rows)


def test_extra_kwargs_narrow_the_sampling(models):
    teacher, _, tokenizer = models
    greedy_rows = rollout(teacher, tokenizer, stim_rows(), PROMPT,
                          TargetConfig(max_tokens=8, temperature=0.0, num_traj_per_stimulus=1), seed=1)
    free = TargetConfig(max_tokens=8, temperature=2.0, num_traj_per_stimulus=2)
    for narrowing in ({"top_k": 1}, {"top_p": 1e-6}):
        narrowed = TargetConfig(max_tokens=8, temperature=2.0, num_traj_per_stimulus=2, extra_kwargs=narrowing)
        rows = rollout(teacher, tokenizer, stim_rows(), PROMPT, narrowed, seed=1)
        assert [r["response_ids"] for r in rows[::2]] == [r["response_ids"] for r in greedy_rows], narrowing
        assert [r["response_ids"] for r in rows[1::2]] == [r["response_ids"] for r in greedy_rows], narrowing
    sampled = rollout(teacher, tokenizer, stim_rows(), PROMPT, free, seed=1)
    assert [r["response_ids"] for r in sampled[::2]] != [r["response_ids"] for r in greedy_rows]


def test_max_concurrency_is_the_hf_backends_batch(models, tmp_path):
    teacher, _, tokenizer = models
    sizes = []
    original = teacher.generate

    def counting(*args, input_ids=None, **kwargs):
        sizes.append(input_ids.shape[0])
        return original(*args, input_ids=input_ids, **kwargs)

    backend = HFRolloutBackend(TeacherSource(ResolvedModel("tiny", tmp_path, "-")), load=lambda: (teacher, tokenizer),
                               batch_size=64)
    teacher.generate = counting
    try:
        backend.rollout(stim_rows(), PROMPT, TargetConfig(max_tokens=4, num_traj_per_stimulus=2, max_concurrency=4),
                        seed=1)
        assert sizes == [4, 2]
        sizes.clear()
        backend.rollout(stim_rows(), PROMPT, TargetConfig(max_tokens=4, num_traj_per_stimulus=2), seed=1)
        assert sizes == [6]
    finally:
        teacher.generate = original
