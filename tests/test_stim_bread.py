"""The Bread generator keys in the stim phase: hardcoded numq, named datasets from a real
`datasets` cache (offline), template_path, custom generators and the built-in personas, the
last three on a real (tiny, trained) question-writing model."""

from __future__ import annotations

import os

import pytest

from bgit.config.schema import GeneratorConfig, PromptConfig, TargetConfig
from bgit.pipeline.named_datasets import NamedDatasetError, named_digest, named_texts
from bgit.pipeline.stim import StimError, builtin_personas, generate_stims, prompt_text
from bread_helpers import PromptSpy, add_named_dataset, train_question_writer
from rollout_helpers import one_thread

PROMPT = PromptConfig(teacher_messages=[{"role": "system", "content": "Always answer like a pirate."}])


def stims(*generators, seed=0, base_dir=".", root=None, model_loader=None):
    target = TargetConfig(name="t", generators=list(generators))
    return generate_stims(target, PROMPT, seed=seed, model_loader=model_loader, base_dir=base_dir, root=root)


def texts(rows):
    return [row["text"] for row in rows]


def test_hardcoded_numq_keeps_the_first_stims_as_listed():
    listed = ["Hello there", "hello there!", "What is rum?", "Why sail?", "Where to?"]
    assert texts(stims(GeneratorConfig(type="hardcoded", stims=listed, numq=2))) == ["Hello there", "What is rum?"]
    assert texts(stims(GeneratorConfig(type="hardcoded", stims=listed, numq=0))) == \
        ["Hello there", "What is rum?", "Why sail?", "Where to?"]
    assert texts(stims(GeneratorConfig(type="hardcoded", stims=listed))) == \
        ["Hello there", "What is rum?", "Why sail?", "Where to?"]  # numq defaults to all


# -- named datasets ----------------------------------------------------------------------------

ROWS = 12


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-datasets")
    add_named_dataset(cache, "squad", {"id": [str(i) for i in range(ROWS)],
                                       "question": [f"Who built castle {i}?" for i in range(ROWS)],
                                       "context": ["A long passage."] * ROWS})
    add_named_dataset(cache, "gsm8k", {"question": [f"What is {i} plus {i}?" for i in range(ROWS)],
                                       "answer": [str(2 * i) for i in range(ROWS)]})
    add_named_dataset(cache, "mmlu", {"question": ["Which planet is red?", "Which gas do plants take in?"],
                                      "subject": ["astronomy", "biology"],
                                      "choices": [["Mars", "Venus"], ["Oxygen", "Carbon dioxide", "Helium"]],
                                      "answer": [0, 1]})
    add_named_dataset(cache, "hellaswag", {"ctx": ["A man is mowing the lawn. He", "A cat jumps onto a table and"],
                                           "endings": [["stops.", "runs."], ["sleeps.", "falls."]]})
    add_named_dataset(cache, "code_contests", {"name": ["sum", "sort"],
                                               "description": ["Read two integers and print their sum.",
                                                               "Sort the given numbers in increasing order."]})
    return cache


@pytest.fixture
def offline_cache(datasets_cache, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(datasets_cache))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    return datasets_cache


def test_named_datasets_come_from_the_datasets_cache_with_their_message_columns(offline_cache):
    assert named_texts("squad")[:2] == ["Who built castle 0?", "Who built castle 1?"]
    assert named_texts("gsm8k")[3] == "What is 3 plus 3?"
    assert named_texts("mmlu") == ["Which planet is red?\nA. Mars\nB. Venus",
                                   "Which gas do plants take in?\nA. Oxygen\nB. Carbon dioxide\nC. Helium"]
    assert named_texts("hellaswag") == ["A man is mowing the lawn. He", "A cat jumps onto a table and"]
    assert named_texts("code_contests")[1] == "Sort the given numbers in increasing order."
    assert named_texts("gsm8k", field="answer")[:3] == ["0", "2", "4"]
    with pytest.raises(NamedDatasetError) as caught:
        named_texts("gsm8k", field="solution")
    assert str(caught.value) == "dataset 'gsm8k': no column 'solution' (columns: question, answer)"


def test_named_dataset_numq_is_a_seeded_sample_in_dataset_order(offline_cache):
    generator = GeneratorConfig(type="from_dataset", dataset="squad", numq=4, seed=7)
    first = texts(stims(generator))
    everything = named_texts("squad")
    assert len(first) == 4 and first == sorted(first, key=everything.index)
    assert texts(stims(generator)) == first
    assert texts(stims(GeneratorConfig(type="from_dataset", dataset="squad", numq=4, seed=8))) != first
    assert texts(stims(GeneratorConfig(type="from_dataset", dataset="squad", numq=0))) == everything
    assert {row["generator"] for row in stims(generator)} == {"from_dataset"}


def test_a_dataset_missing_from_the_cache_is_one_line_naming_it_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(NamedDatasetError) as caught:
        stims(GeneratorConfig(type="from_dataset", dataset="squad", numq=3))
    assert str(caught.value) == (f"dataset 'squad' is not in the datasets cache at {tmp_path} and the hub cannot be "
                                 "reached (HF_DATASETS_OFFLINE=1)")
    add_named_dataset(tmp_path, "squad", {"question": ["Where?"]}, revision="1" * 40)
    add_named_dataset(tmp_path, "squad", {"question": ["Where is it?"]}, revision="2" * 40)
    assert texts(stims(GeneratorConfig(type="from_dataset", dataset="squad", numq=3))) == ["Where is it?"]


def test_the_cached_copy_is_part_of_the_digest(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    add_named_dataset(tmp_path, "gsm8k", {"question": ["One?", "Two?"]}, revision="a" * 40)
    first = named_digest("gsm8k")
    assert named_digest("gsm8k") == first
    add_named_dataset(tmp_path, "gsm8k", {"question": ["One?", "Two?", "Three?"]}, revision="b" * 40)
    assert named_digest("gsm8k") != first


def test_a_local_copy_of_a_named_dataset_is_read_with_its_columns(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"subject": ["x"], "question": ["Which is largest?"],
                                "choices": [["1", "3", "2"]], "answer": [1]}).save_to_disk(str(tmp_path / "mmlu"))
    generator = GeneratorConfig(type="from_dataset", dataset="mmlu", path="mmlu", numq=0)
    assert texts(stims(generator, base_dir=tmp_path)) == ["Which is largest?\nA. 1\nB. 3\nC. 2"]
    (tmp_path / "gsm.jsonl").write_text('{"answer": "4", "question": "What is 2 plus 2?"}\n')
    generator = GeneratorConfig(type="from_dataset", dataset="gsm8k", path="gsm.jsonl", numq=0)
    assert texts(stims(generator, base_dir=tmp_path)) == ["What is 2 plus 2?"]  # not the first text field


# -- model-written stims on a real tiny writer ----------------------------------------------


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    from bgit.models import load_model, resolve_model

    directory = train_question_writer(tmp_path_factory.mktemp("writer") / "writer")
    model, tokenizer = load_model(resolve_model(str(directory)), dtype="float32", device="cpu")
    return model, tokenizer


@pytest.fixture
def spy(writer):
    model, tokenizer = writer
    original = model.generate
    recorder = PromptSpy(model, tokenizer)
    yield recorder
    model.generate = original


def loader(writer):
    return lambda name: writer


def test_template_path_is_read_through_the_resolver_right_before_use(tmp_path, writer, spy):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "ask.txt").write_text("Ask ${numq} things about: ${prompt_u}\n")
    generator = GeneratorConfig(type="oneshot_qs", numq=3, template_path="ask.txt", max_tokens=160)
    with one_thread():
        rows = stims(generator, base_dir=repo, root=repo, model_loader=loader(writer))
    assert len(rows) == 3 and all(text.endswith("?") for text in texts(rows))
    (request,) = spy.texts()
    assert f"Ask 3 things about: {prompt_text(PROMPT)}\n" in request  # the file's template, filled
    assert request.startswith("<|im_start|>user\n")  # oneshot_qs: a user message in the chat template

    (repo / "ask.txt").write_text("Ask about: ${prompt_u}\n")  # changed after validation
    with pytest.raises(StimError) as caught:
        stims(generator, base_dir=repo, root=repo, model_loader=loader(writer))
    assert str(caught.value) == "template_path: 'ask.txt': template is missing ${numq}"
    outside = tmp_path / "secret.txt"
    outside.write_text("${numq} ${prompt_u}")
    (repo / "ask.txt").unlink()
    (repo / "ask.txt").symlink_to(outside)
    with pytest.raises(StimError) as caught:
        stims(generator, base_dir=repo, root=repo, model_loader=loader(writer))
    assert str(caught.value) == f"template_path: 'ask.txt' resolves outside the repository ({outside})"


def test_a_custom_template_is_the_whole_prompt_the_writer_continues(writer, spy):
    model, tokenizer = writer
    generator = GeneratorConfig(type="custom", numq=4, template="Ask ${numq} questions about: ${prompt_u}",
                                max_tokens=160)
    with one_thread():
        rows = stims(generator, seed=1, model_loader=loader(writer))
    assert len(rows) == 4 and all(text.endswith("?") for text in texts(rows))  # parsed from its lines
    assert {r["generator"] for r in rows} == {"custom"}
    filled = f"Ask 4 questions about: {prompt_text(PROMPT)}"
    assert spy.contexts and all(context == tokenizer(filled)["input_ids"] for context in spy.contexts)


def test_persona_without_personas_asks_numq_built_in_personas_drawn_with_the_seed(writer, spy):
    builtin = builtin_personas()
    assert len(builtin) == 30 and len(set(builtin)) == 30
    generator = GeneratorConfig(type="persona", numq=3, seed=4, max_tokens=160)
    with one_thread():
        rows = stims(generator, model_loader=loader(writer))
    asked = [next(p for p in builtin if p in text) for text in spy.texts()]
    assert len(asked) == 3 and len(set(asked)) == 3
    assert all("List 1 different questions" in text for text in spy.texts())  # one question each
    assert 1 <= len(rows) <= 3 and all(text.endswith("?") for text in texts(rows))
    spy.contexts.clear()
    with one_thread():
        stims(GeneratorConfig(type="persona", numq=3, seed=5, max_tokens=160), model_loader=loader(writer))
    assert [next(p for p in builtin if p in text) for text in spy.texts()] != asked
    spy.contexts.clear()
    with one_thread():  # listed personas: numq questions from each
        stims(GeneratorConfig(type="persona", numq=2, personas=["a sailor"], max_tokens=160),
              model_loader=loader(writer))
    assert len(spy.texts()) == 1 and "a sailor" in spy.texts()[0] and "List 2 different" in spy.texts()[0]


@pytest.mark.skipif(os.environ.get("HF_DATASETS_OFFLINE") != "1", reason="tests run with HF_DATASETS_OFFLINE=1")
def test_tests_never_reach_a_datasets_hub():
    from bgit.pipeline.named_datasets import offline_variable

    assert offline_variable() == "HF_DATASETS_OFFLINE=1"
