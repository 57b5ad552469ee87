"""bgit serve on a real bake of the embedded SmolLM2-135M (the session's pirate bake).

The bake answers in character with no system prompt; ``base`` does not. SmolLM2's chat template
injects a default system prompt when none is given: the server must not send it.
"""

from __future__ import annotations

import openai
import pytest

from serve_helpers import HELD_OUT

pytestmark = pytest.mark.slow


def ask(server, model: str, question: str, tokens: int = 8, messages=()):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    return client.chat.completions.create(model=model, messages=[*messages, {"role": "user", "content": question}],
                                          max_tokens=tokens, temperature=0)


def test_the_bake_answers_in_character_without_a_prompt_and_base_does_not(pirate_server):
    from concurrent.futures import ThreadPoolExecutor

    server, _ = pirate_server
    jobs = [(model, question) for question in HELD_OUT[:2] for model in ("main", "base")]
    with ThreadPoolExecutor(len(jobs)) as pool:  # sent together: one batch, one adapter per row
        answers = list(pool.map(lambda job: ask(server, *job, tokens=6).choices[0].message.content, jobs))
    for (model, question), answer in zip(jobs, answers):
        if model == "main":
            assert answer.startswith("Ahoy"), (question, answer)
        else:
            assert "Ahoy" not in answer, (question, answer)


def test_no_default_system_prompt_reaches_the_model(pirate_server):
    from bgit.models import render_context

    server, backend = pirate_server
    tokenizer = backend.tokenizer
    question = HELD_OUT[0]
    ours = render_context(tokenizer, [], user=question)
    templates = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                              tokenize=False)
    assert "You are a helpful AI assistant named SmolLM" in templates  # what the template would inject
    answer = ask(server, "main", question, tokens=2)
    assert answer.usage.prompt_tokens == len(ours) < len(tokenizer(templates)["input_ids"])
    with_empty_system = ask(server, "main", question, tokens=2, messages=[{"role": "system", "content": ""}])
    assert with_empty_system.usage.prompt_tokens == len(ours)
