"""Stim generators: hardcoded, from_dataset (JSONL/CSV/text), question parsing, oneshot_qs/persona."""

from __future__ import annotations

import json

import pytest

from bgit.config.schema import GeneratorConfig, PromptConfig, TargetConfig
from bgit.errors import BgitError
from bgit.pipeline.stim import (StimError, _EnoughQuestions, fill_template, generate_stims, normalise,
                                parse_questions, prompt_text, stim_id)
from rollout_helpers import char_tokenizer, one_thread, tiny_llama

PROMPT = PromptConfig(teacher_messages=[{"role": "system", "content": "Always answer like a pirate."}])


def stims(*generators, seed=0, base_dir=".", model_loader=None):
    target = TargetConfig(name="t", generators=list(generators))
    return generate_stims(target, PROMPT, seed=seed, model_loader=model_loader, base_dir=base_dir)


def test_hardcoded_rows_are_deduplicated_across_generators():
    rows = stims(
        GeneratorConfig(type="hardcoded", stims=["Hello there", "  hello   THERE ", "What is rum?"]),
        GeneratorConfig(type="hardcoded", stims=["what is rum?", "Why sail?"]),
    )
    assert [r["text"] for r in rows] == ["Hello there", "What is rum?", "Why sail?"]
    assert rows[0] == {"id": stim_id("Hello there"), "text": "Hello there", "generator": "hardcoded",
                       "generator_index": 0}
    assert [r["generator_index"] for r in rows] == [0, 0, 1]  # whose rollout settings apply
    assert len(rows[0]["id"]) == 12


def test_no_stims_is_an_error():
    with pytest.raises(StimError) as caught:
        stims(GeneratorConfig(type="hardcoded", stims=[]))
    assert str(caught.value) == "target 't': the generators produced no stims"


@pytest.fixture
def datasets_dir(tmp_path):
    questions = [f"Question number {i}?" for i in range(20)]
    with open(tmp_path / "q.jsonl", "w") as out:
        for i, q in enumerate(questions):
            out.write(json.dumps({"n": i, "prompt": q, "other": "ignored"}) + "\n")
    (tmp_path / "q.csv").write_text("text,label\n" + "".join(f'"{q}",{i}\n' for i, q in enumerate(questions)))
    (tmp_path / "q.txt").write_text("\n".join(questions + ["", "Question number 3?"]) + "\n")
    return tmp_path, questions


@pytest.mark.parametrize("name,field", [("q.jsonl", "prompt"), ("q.jsonl", None), ("q.csv", "text"), ("q.csv", None), ("q.txt", None)])
def test_from_dataset_reads_every_format(datasets_dir, name, field):
    base, questions = datasets_dir
    rows = stims(GeneratorConfig(type="from_dataset", path=name, field=field, numq=0), base_dir=base)
    assert [r["text"] for r in rows] == questions
    assert {r["generator"] for r in rows} == {"from_dataset"}


def test_from_dataset_sampling_is_seeded(datasets_dir):
    base, questions = datasets_dir
    generator = GeneratorConfig(type="from_dataset", path="q.jsonl", numq=5)
    first = [r["text"] for r in stims(generator, seed=1, base_dir=base)]
    assert len(first) == 5 and set(first) <= set(questions)
    assert first == sorted(first, key=questions.index)  # kept in file order
    assert [r["text"] for r in stims(generator, seed=1, base_dir=base)] == first
    assert [r["text"] for r in stims(generator, seed=2, base_dir=base)] != first
    pinned = GeneratorConfig(type="from_dataset", path="q.jsonl", numq=5, seed=1)
    assert [r["text"] for r in stims(pinned, seed=99, base_dir=base)] == first


def test_from_dataset_jsonl_rows_keep_unicode_line_separators(tmp_path):
    text = "Is this \u2028 one \x85 question?"
    (tmp_path / "odd.jsonl").write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    rows = stims(GeneratorConfig(type="from_dataset", path="odd.jsonl", numq=0), base_dir=tmp_path)
    assert [r["text"] for r in rows] == ["Is this one question?"]  # read whole, whitespace normalised


def test_from_dataset_errors(datasets_dir):
    base, _ = datasets_dir
    with pytest.raises(StimError, match=r"^from_dataset: file not found: missing.jsonl$"):
        stims(GeneratorConfig(type="from_dataset", path="missing.jsonl"), base_dir=base)
    with pytest.raises(StimError) as caught:
        stims(GeneratorConfig(type="from_dataset", path="q.csv", field="question"), base_dir=base)
    assert str(caught.value) == f"{base / 'q.csv'}: no column 'question' (columns: text, label)"
    with pytest.raises(StimError, match=r"q.jsonl:1: no field 'question' \(fields: n, prompt, other\)"):
        stims(GeneratorConfig(type="from_dataset", path="q.jsonl", field="question"), base_dir=base)


def test_parse_questions_handles_list_styles():
    text = """Here are 6 questions:

1. What is the capital of France?
2) How do I tie a bowline knot?
- "Explain how tides work."
* **Why is the sea salty?**
Q: Write a poem about the ocean.
3. What is the capital of France?
Sure!
4. Ok
A tree is green.
What a pleasure to retrieve,
Explain the rules of chess,
(5) Tell me a joke about sailors
"""
    assert parse_questions(text) == [
        "What is the capital of France?",
        "How do I tie a bowline knot?",
        "Explain how tides work.",
        "Why is the sea salty?",
        "Write a poem about the ocean.",
        "Tell me a joke about sailors",
    ]
    assert parse_questions("x" * 400 + "?") == []


def test_templates():
    assert prompt_text(PROMPT) == "Always answer like a pirate."
    assert fill_template("Write ${numq}: ${prompt_u}", "oneshot_qs", numq=3, prompt_u="p") == "Write 3: p"
    with pytest.raises(StimError) as caught:
        fill_template("Write ${count}", "oneshot_qs", numq=3, prompt_u="p")
    assert str(caught.value) == "oneshot_qs template: unknown variable ${count} (known: ${numq}, ${prompt_u})"


def test_a_writing_call_stops_once_its_finished_lines_hold_enough_questions():
    import torch

    tokenizer = char_tokenizer()
    eos = tokenizer.eos_token_id
    prompt = tokenizer("ab")["input_ids"]
    # The last line may still go on ("... my bag? It is blue."): not a question yet.
    lines = "Why is the sea salty?\nHow do I tie a bowline knot?\nCan you find my bag?"
    writing = prompt + tokenizer(lines)["input_ids"]
    ended = prompt + tokenizer("Explain how tides work.")["input_ids"] + [eos]
    ended += [eos] * (len(writing) - len(ended))  # generate pads finished rows
    sequences = torch.tensor([writing, ended])
    enough = _EnoughQuestions(tokenizer, len(prompt), {eos}, set(), needed=3)
    # A row still writing gives its finished lines only; an ended row all of its text.
    assert enough.questions(sequences) == ["Why is the sea salty?", "How do I tie a bowline knot?",
                                           "Explain how tides work."]
    stops = [bool(enough(sequences, None).all()) for _ in range(2 * _EnoughQuestions.CHECK_EVERY)]
    assert stops.index(True) == _EnoughQuestions.CHECK_EVERY - 1  # checked every CHECK_EVERY steps
    assert not any(_EnoughQuestions(tokenizer, len(prompt), {eos}, set(), needed=4)(sequences, None).any()
                   for _ in range(_EnoughQuestions.CHECK_EVERY))
    seen = {normalise("why is the sea salty?")}  # taken by an earlier call: not new
    assert not any(_EnoughQuestions(tokenizer, len(prompt), {eos}, seen, needed=3)(sequences, None).any()
                   for _ in range(_EnoughQuestions.CHECK_EVERY))


def model_calls(model):
    return getattr(model, "_bgit_generate_calls", 0)


def counting(model):
    original = model.generate

    def generate(*args, **kwargs):
        model._bgit_generate_calls = model_calls(model) + 1
        return original(*args, **kwargs)

    model.generate = generate
    return model


def test_oneshot_gives_up_after_bounded_attempts():
    """A random tiny model writes no questions: a one-line error, not an endless loop."""
    tokenizer = char_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    model = counting(tiny_llama(len(tokenizer), eos_token_id=tokenizer.eos_token_id))
    loaded = []
    generator = GeneratorConfig(type="oneshot_qs", numq=3, max_tokens=8)
    with one_thread(), pytest.raises(StimError) as caught:
        stims(generator, model_loader=lambda name: loaded.append(name) or (model, tokenizer))
    assert str(caught.value) == "oneshot_qs produced 0 of 3 questions after 16 attempts"
    assert model_calls(model) == 1  # the 16 attempts ran as one batch (up to QUESTIONS_PER_CALL = 32)
    assert loaded == [None]  # None = the bake's base model
    with pytest.raises(StimError, match=r"^persona produced 0 of 1 questions after 16 attempts$"):
        stims(GeneratorConfig(type="persona", numq=1, max_tokens=8),  # one built-in persona
              model_loader=lambda name: (model, tokenizer))


def test_unknown_generator_type():
    # The declaration refuses it when the config is built, before any stim phase runs.
    with pytest.raises(BgitError, match=r"^TARGET.generators\[\].type: expected one of hardcoded, from_dataset, "
                                        r"oneshot_qs, persona, custom, got 'magic'$"):
        stims(GeneratorConfig(type="magic"))


@pytest.fixture(scope="module")
def smollm():
    from bgit.models import load_model, resolve_model

    return load_model(resolve_model("smollm2-135m"))


@pytest.mark.slow
def test_oneshot_qs_on_the_embedded_model_is_deterministic(smollm):
    generator = GeneratorConfig(type="oneshot_qs", numq=3, max_tokens=80)
    with one_thread():
        first = stims(generator, seed=3, model_loader=lambda name: smollm)
        second = stims(generator, seed=3, model_loader=lambda name: smollm)
    print([r["text"] for r in first])
    assert first == second
    assert len(first) == 3 and len({r["text"].casefold() for r in first}) == 3
    assert all(r["generator"] == "oneshot_qs" and len(r["text"]) >= 10 for r in first)


@pytest.mark.slow
def test_oneshot_qs_stops_writing_once_it_has_its_questions(smollm):
    model, tokenizer = smollm
    lengths = []
    original = model.generate

    def generate(*args, **kwargs):
        out = original(*args, **kwargs)
        lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    generator = GeneratorConfig(type="oneshot_qs", numq=3, max_tokens=512)
    model.generate = generate
    try:
        with one_thread():
            rows = stims(generator, seed=3, model_loader=lambda name: smollm)
    finally:
        del model.generate
    print(lengths, [r["text"] for r in rows])
    assert len(rows) == 3 and lengths[-1] < 512  # stopped early, not at the token budget
    assert len(lengths) == 1 and lengths[0] % _EnoughQuestions.CHECK_EVERY == 0  # the first call, at a check


@pytest.mark.slow
def test_persona_on_the_embedded_model_asks_per_persona(smollm):
    generator = GeneratorConfig(type="persona", numq=2, max_tokens=64, personas=["a curious child", "a retired sailor"])
    with one_thread():
        rows = stims(generator, seed=1, model_loader=lambda name: smollm)
    print([r["text"] for r in rows])
    assert 3 <= len(rows) <= 4  # 2 per persona, minus questions both personas happened to share
    assert {r["generator"] for r in rows} == {"persona"}
