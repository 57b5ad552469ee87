"""One serve test suite for every generation backend: HF (tests/test_serve.py) and vLLM
(tests/backend_vllm/test_vllm_serve.py, in .venv-vllm), like tests/rollout_contract.py.

Each runs a real server on 127.0.0.1, driven by the official openai client, over a repository
with two bakes on main (a, tagged v1, then b); what the server answers is checked against
plain transformers + PEFT greedy decoding (serve_helpers.Reference).

A subclass (named Test*) provides the ``setup`` fixture (a :class:`Setup`), may shorten the
generations (a bigger model on a slower backend), and says how it shows that concurrent
requests were decoded together (:meth:`ServeContract.check_batched`).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from evaluate_helpers import commit_bake, make_adapter
from serve_helpers import Reference, raw_request

USER = "why is the sky blue?"


@dataclass
class Setup:
    repo: object
    base: Path
    adapters: dict      # name -> adapter dir: "a" (v1), "b" (main)
    shas: dict          # name -> commit id
    url: str            # the server
    reference: Reference
    max_context: int    # the base model's positions, from its config.json
    backend: object = None   # the backend, when the server runs in this process
    keyed: object = None     # a second server on the same backend that requires API_KEY

    def client(self, key: str = "unused", keyed: bool = False) -> openai.OpenAI:
        url = self.keyed.url if keyed else self.url
        return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=300)

    def stats(self) -> dict:
        return raw_request(self.url, "GET", "/bgit/stats")[1]


def greedy(setup: Setup, client, model: str, user: str = USER, tokens: int = 12, **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": user}],
                                          max_tokens=tokens, temperature=0, extra_body={"ignore_eos": True, **extra})


def wait_idle(setup: Setup, seconds: float = 30.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stats = setup.stats()
        if stats["active"] == 0 and stats["queued"] == 0:
            return stats
        time.sleep(0.05)
    raise AssertionError(f"still generating: {setup.stats()}")


def wait_active(setup: Setup, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while setup.stats()["active"] == 0:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.02)


class ServeContract:
    GREEDY_TOKENS = 12
    FOLLOW_TOKENS = 60              # a stream long enough to still run while a new bake lands
    CONCURRENT_TOKENS = (120, 30)   # the four clients that start first, the four that join them

    def check_batched(self, before: dict, after: dict, tokens: list[int]) -> None:
        """Assert, from /bgit/stats before and after, that the concurrent requests ran together."""
        raise NotImplementedError

    # -- models and generation -----------------------------------------------------------

    def test_models_lists_branches_tags_and_base(self, setup):
        assert [m.id for m in setup.client().models.list()] == ["main", "v1", "base"]
        assert setup.client().models.retrieve("v1").id == "v1"
        assert setup.client().models.retrieve(setup.shas["a"][:10]).id == setup.shas["a"][:10]

    @pytest.mark.parametrize("model, adapter", [("main", "b"), ("v1", "a"), ("base", None)])
    def test_chat_matches_peft_greedy_decoding(self, setup, model, adapter):
        tokens = self.GREEDY_TOKENS
        response = greedy(setup, setup.client(), model, tokens=tokens)
        prompt = setup.reference.chat_ids(USER)
        expected = setup.reference.greedy(setup.adapters.get(adapter), prompt, tokens)
        assert response.choices[0].message.content == setup.reference.text(expected)
        assert response.choices[0].finish_reason == "length" and response.model == model
        assert response.system_fingerprint == (setup.shas[adapter] if adapter else "base")
        assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == \
            (len(prompt), tokens, len(prompt) + tokens)

    def test_each_bake_answers_differently_from_base(self, setup):
        answers = {model: greedy(setup, setup.client(), model, tokens=self.GREEDY_TOKENS).choices[0].message.content
                   for model in ("main", "v1", "base")}
        assert len(set(answers.values())) == 3, answers

    def test_commit_ids_name_bakes_reachable_from_served_refs(self, setup):
        by_id = greedy(setup, setup.client(), setup.shas["a"][:8])
        assert by_id.system_fingerprint == setup.shas["a"]
        assert by_id.choices[0].message.content == greedy(setup, setup.client(), "v1").choices[0].message.content

    def test_streaming_chat_sends_chunks_usage_and_done(self, setup):
        client = setup.client()
        whole = greedy(setup, client, "main").choices[0].message.content
        chunks = list(client.chat.completions.create(
            model="main", messages=[{"role": "user", "content": USER}], max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
        assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # sent as it came
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
        assert all(c.usage is None for c in chunks[:-1])
        status, text = raw_request(setup.url, "POST", "/v1/chat/completions", json.dumps(
            {"model": "main", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}))
        assert status == 200 and text.endswith("data: [DONE]\n\n") and text.startswith("data: {")

    def test_completions_one_and_several_prompts(self, setup):
        client = setup.client()
        ids = setup.reference.tokenizer("hello")["input_ids"]
        expected = setup.reference.text(setup.reference.greedy(setup.adapters["b"], ids, 8))
        single = client.completions.create(model="main", prompt="hello", max_tokens=8, temperature=0,
                                           extra_body={"ignore_eos": True})
        assert single.choices[0].text == expected and single.usage.prompt_tokens == len(ids)
        several = client.completions.create(model="main", prompt=["hello", ids], max_tokens=8, temperature=0,
                                            extra_body={"ignore_eos": True})
        assert [c.text for c in several.choices] == [expected, expected]
        assert several.usage.completion_tokens == 16
        streamed = client.completions.create(model="main", prompt="hello", max_tokens=8, temperature=0, stream=True,
                                             extra_body={"ignore_eos": True})
        assert "".join(c.choices[0].text for c in streamed if c.choices) == expected

    def test_empty_system_message_renders_as_no_system_text(self, setup):
        client = setup.client()
        plain = greedy(setup, client, "main")
        with_empty = client.chat.completions.create(
            model="main", messages=[{"role": "system", "content": ""}, {"role": "user", "content": USER}],
            max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
        assert with_empty.usage.prompt_tokens == plain.usage.prompt_tokens == len(setup.reference.chat_ids(USER))
        assert with_empty.choices[0].message.content == plain.choices[0].message.content

    def test_seeds_are_honoured_and_stop_strings_cut(self, setup):
        client = setup.client()

        def sample(seed):
            return client.chat.completions.create(model="main", messages=[{"role": "user", "content": USER}],
                                                  max_tokens=16, temperature=1.0, seed=seed,
                                                  extra_body={"ignore_eos": True}).choices[0].message.content
        first = sample(7)
        assert sample(7) == first and sample(8) != first
        stop = first[3:5]
        cut = client.chat.completions.create(model="main", messages=[{"role": "user", "content": USER}],
                                             max_tokens=16, temperature=1.0, seed=7, stop=[stop],
                                             extra_body={"ignore_eos": True})
        assert cut.choices[0].message.content == first[: first.index(stop)]
        assert cut.choices[0].finish_reason == "stop"

    # -- following a branch ---------------------------------------------------------------

    def test_a_new_bake_on_a_served_branch_is_used_from_the_next_request(self, setup, tmp_path):
        repo, reference, tokens = setup.repo, setup.reference, self.FOLLOW_TOKENS
        repo.create_branch("follow", "main")
        client = setup.client()
        assert "follow" in [m.id for m in client.models.list()]
        stream = client.chat.completions.create(model="follow", messages=[{"role": "user", "content": USER}],
                                                max_tokens=tokens, temperature=0, stream=True,
                                                extra_body={"ignore_eos": True})
        chunks = [next(stream), next(stream)]  # in flight on bake b
        adapter_c = make_adapter(setup.base, tmp_path / "adapter-c", seed=3)
        repo.checkout("follow")
        try:
            sha_c = commit_bake(repo, setup.base, adapter_c, tmp_path / "work-c", "bake c", rows=[])
        finally:
            repo.checkout("main")
        after = greedy(setup, client, "follow")
        assert after.system_fingerprint == sha_c
        prompt = reference.chat_ids(USER)
        assert after.choices[0].message.content == reference.text(reference.greedy(adapter_c, prompt, 12))
        chunks += list(stream)  # the request that started on b finished on b
        assert {c.system_fingerprint for c in chunks} == {setup.shas["b"]}
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == reference.text(reference.greedy(setup.adapters["b"], prompt, tokens))

    # -- concurrency ----------------------------------------------------------------------

    def test_eight_concurrent_clients_are_batched_and_answered_right(self, setup):
        """Four clients start together, four more join while they run; every answer equals
        unbatched greedy decoding."""
        models = ["main", "v1", "base", "main", "v1", "base", "main", "main"]
        users = [f"question number {i}: {'why ' * i}?" for i in range(8)]
        long, short = self.CONCURRENT_TOKENS
        tokens = [long] * 4 + [short] * 4
        answers, errors = {}, []
        before = setup.stats()

        def ask(i):
            try:
                answers[i] = greedy(setup, setup.client(), models[i], users[i], tokens=tokens[i])
            except Exception as error:  # collected: an assertion in a thread would pass silently
                errors.append(error)
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for thread in threads[:4]:
            thread.start()
        wait_active(setup)
        for thread in threads[4:]:
            thread.start()
        for thread in threads:
            thread.join(300)
        after = setup.stats()
        assert errors == [] and len(answers) == 8
        adapters = {"main": setup.adapters["b"], "v1": setup.adapters["a"], "base": None}
        for i, response in answers.items():
            expected = setup.reference.greedy(adapters[models[i]], setup.reference.chat_ids(users[i]), tokens[i])
            assert response.choices[0].message.content == setup.reference.text(expected), (i, models[i])
        assert after["tokens"] - before["tokens"] == sum(tokens)
        self.check_batched(before, after, tokens)

    # -- errors ---------------------------------------------------------------------------

    def test_unknown_model_is_404(self, setup):
        with pytest.raises(openai.NotFoundError) as caught:
            greedy(setup, setup.client(), "no-such-branch")
        error = caught.value.body
        assert caught.value.status_code == 404 and error["code"] == "model_not_found" and error["param"] == "model"
        assert error["message"].startswith("The model `no-such-branch` does not exist")
        status, body = raw_request(setup.url, "POST", "/v1/completions", json.dumps({"model": "0000000", "prompt": "x"}))
        assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}

    def test_malformed_json_is_400(self, setup):
        status, body = raw_request(setup.url, "POST", "/v1/chat/completions", "{not json")
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_json"
        status, body = raw_request(setup.url, "POST", "/v1/chat/completions", "[1, 2]")
        assert status == 400 and body["error"]["message"] == "The request body must be a JSON object."

    @pytest.mark.parametrize("change, param, code", [
        ({"temperature": 5}, "temperature", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"top_p": "high"}, "top_p", "invalid_type"),
        ({"n": 2}, "n", "invalid_value"),
        ({"messages": None}, "messages", "missing_required_parameter"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"tools": [{"type": "function"}]}, "tools", "unsupported_parameter"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
    ])
    def test_bad_parameters_are_400_naming_the_parameter(self, setup, change, param, code):
        body = {"model": "main", "messages": [{"role": "user", "content": "hi"}], **change}
        status, answer = raw_request(setup.url, "POST", "/v1/chat/completions", json.dumps(body))
        assert status == 400, answer
        assert answer["error"]["param"] == param and answer["error"]["code"] == code

    def test_context_too_long_is_400(self, setup):
        with pytest.raises(openai.BadRequestError) as caught:
            setup.client().chat.completions.create(
                model="main", messages=[{"role": "user", "content": " a" * (setup.max_context + 16)}])
        error = caught.value.body
        assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
        assert error["message"].startswith(f"This model's maximum context length is {setup.max_context} tokens. "
                                           "However, you requested")
        with pytest.raises(openai.BadRequestError) as caught:
            greedy(setup, setup.client(), "main", tokens=setup.max_context)
        assert caught.value.body["code"] == "context_length_exceeded"

    # -- a client that goes away ----------------------------------------------------------

    def test_client_disconnect_mid_stream_stops_generation(self, setup):
        before = wait_idle(setup)
        host, port = setup.url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("POST", "/v1/chat/completions", body=json.dumps({
            "model": "main", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 4000,
            "temperature": 0, "stream": True, "ignore_eos": True}), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and response.readline().startswith(b"data: ")
        wait_active(setup)
        connection.sock.shutdown(socket.SHUT_RDWR)
        connection.close()
        after = wait_idle(setup)
        assert after["cancelled"] == before["cancelled"] + 1
        assert after["tokens"] - before["tokens"] < 4000

    def test_client_disconnect_while_waiting_for_a_whole_answer_stops_generation(self, setup):
        before = wait_idle(setup)
        host, port = setup.url.removeprefix("http://").rsplit(":", 1)
        body = json.dumps({"model": "base", "prompt": "go", "max_tokens": 4000, "ignore_eos": True}).encode()
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            wait_active(setup)
        after = wait_idle(setup)
        assert after["cancelled"] == before["cancelled"] + 1
        assert after["tokens"] - before["tokens"] < 4000
