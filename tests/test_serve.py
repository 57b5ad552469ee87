"""bgit serve's API on a real uvicorn server on 127.0.0.1, driven by the official openai client.

A tiny random Llama repository (two bakes on main, tag v1 on the first); what the server
answers is checked against plain transformers + PEFT greedy decoding (serve_helpers.Reference).
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
from click.testing import CliRunner

from evaluate_helpers import commit_bake, make_adapter
from serve_helpers import API_KEY, Reference, raw_request, tiny_repo

USER = "why is the sky blue?"


@dataclass
class Setup:
    repo: object
    base: Path
    adapters: dict
    shas: dict
    server: object
    keyed: object
    backend: object
    reference: Reference

    def client(self, key: str = "unused", keyed: bool = False) -> openai.OpenAI:
        server = self.keyed if keyed else self.server
        return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)

    def stats(self) -> dict:
        return raw_request(self.server.url, "GET", "/bgit/stats")[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from bgit.serve import RunningServer, build
    from bgit.serve.app import create_app

    root = tmp_path_factory.mktemp("serve")
    repo, base, adapters, shas = tiny_repo(root)
    app, backend = build(repo.root)
    server = RunningServer(app)
    keyed = RunningServer(create_app(backend, api_key=API_KEY))  # same model, a key required
    yield Setup(repo, base, adapters, shas, server, keyed, backend, Reference(base))
    server.stop()
    keyed.stop()
    backend.close()


def greedy(setup: Setup, client, model: str, user: str = USER, tokens: int = 12, **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": user}],
                                          max_tokens=tokens, temperature=0, extra_body={"ignore_eos": True, **extra})


# -- models and generation ---------------------------------------------------------------------

def test_models_lists_branches_tags_and_base(setup):
    assert [m.id for m in setup.client().models.list()] == ["main", "v1", "base"]
    assert setup.client().models.retrieve("v1").id == "v1"
    assert setup.client().models.retrieve(setup.shas["a"][:10]).id == setup.shas["a"][:10]


@pytest.mark.parametrize("model, adapter", [("main", "b"), ("v1", "a"), ("base", None)])
def test_chat_matches_peft_greedy_decoding(setup, model, adapter):
    response = greedy(setup, setup.client(), model)
    prompt = setup.reference.chat_ids(USER)
    expected = setup.reference.greedy(setup.adapters.get(adapter), prompt, 12)
    assert response.choices[0].message.content == setup.reference.text(expected)
    assert response.choices[0].finish_reason == "length" and response.model == model
    assert response.system_fingerprint == (setup.shas[adapter] if adapter else "base")
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == \
        (len(prompt), 12, len(prompt) + 12)


def test_commit_ids_name_bakes_reachable_from_served_refs(setup):
    by_id = greedy(setup, setup.client(), setup.shas["a"][:8])
    assert by_id.system_fingerprint == setup.shas["a"]
    assert by_id.choices[0].message.content == greedy(setup, setup.client(), "v1").choices[0].message.content


def test_streaming_chat_sends_chunks_usage_and_done(setup):
    client = setup.client()
    whole = greedy(setup, client, "main").choices[0].message.content
    chunks = list(client.chat.completions.create(
        model="main", messages=[{"role": "user", "content": USER}], max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])
    status, text = raw_request(setup.server.url, "POST", "/v1/chat/completions", json.dumps(
        {"model": "main", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}))
    assert status == 200 and text.endswith("data: [DONE]\n\n") and text.startswith("data: {")


def test_completions_one_and_several_prompts(setup):
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


def test_empty_system_message_renders_as_no_system_text(setup):
    client = setup.client()
    plain = greedy(setup, client, "main")
    with_empty = client.chat.completions.create(
        model="main", messages=[{"role": "system", "content": ""}, {"role": "user", "content": USER}],
        max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    assert with_empty.usage.prompt_tokens == plain.usage.prompt_tokens == len(setup.reference.chat_ids(USER))
    assert with_empty.choices[0].message.content == plain.choices[0].message.content


def test_seeds_are_honoured_and_stop_strings_cut(setup):
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


# -- following a branch -------------------------------------------------------------------------

def test_a_new_bake_on_a_served_branch_is_used_from_the_next_request(setup, tmp_path):
    repo, reference = setup.repo, setup.reference
    repo.create_branch("follow", "main")
    client = setup.client()
    assert "follow" in [m.id for m in client.models.list()]
    stream = client.chat.completions.create(model="follow", messages=[{"role": "user", "content": USER}],
                                            max_tokens=60, temperature=0, stream=True,
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
    assert text == reference.text(reference.greedy(setup.adapters["b"], prompt, 60))


def test_adapters_beyond_max_loaded_are_unloaded_and_reloaded(setup):
    from bgit.serve import RunningServer, build

    app, backend = build(setup.repo.root, max_loaded=1)
    server = RunningServer(app)
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        prompt = setup.reference.chat_ids(USER)
        for model, adapter in [("main", "b"), ("v1", "a"), ("main", "b")]:
            answer = greedy(setup, client, model, tokens=6)
            expected = setup.reference.greedy(setup.adapters[adapter], prompt, 6)
            assert answer.choices[0].message.content == setup.reference.text(expected), model
            assert backend.stats()["adapters_loaded"] == 1
    finally:
        server.stop()
        backend.close()


# -- concurrency ----------------------------------------------------------------------------

def test_eight_concurrent_clients_are_batched_and_answered_right(setup):
    """Four clients start together, four more join while they run (their batch is merged into
    the running one); every answer equals unbatched greedy decoding."""
    models = ["main", "v1", "base", "main", "v1", "base", "main", "main"]
    users = [f"question number {i}: {'why ' * i}?" for i in range(8)]
    tokens = [120] * 4 + [30] * 4
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
    _wait_active(setup)
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
    rows_decoded, steps = after["tokens"] - before["tokens"], after["steps"] - before["steps"]
    assert rows_decoded == sum(tokens) and steps < rows_decoded  # several rows per forward pass
    assert after["merges"] > before["merges"]


# -- errors ---------------------------------------------------------------------------------

def test_unknown_model_is_404(setup):
    with pytest.raises(openai.NotFoundError) as caught:
        greedy(setup, setup.client(), "no-such-branch")
    error = caught.value.body
    assert caught.value.status_code == 404 and error["code"] == "model_not_found" and error["param"] == "model"
    assert error["message"].startswith("The model `no-such-branch` does not exist")
    status, body = raw_request(setup.server.url, "POST", "/v1/completions", json.dumps(
        {"model": "0000000", "prompt": "x"}))
    assert status == 404 and set(body["error"]) == {"message", "type", "param", "code"}


def test_malformed_json_is_400(setup):
    status, body = raw_request(setup.server.url, "POST", "/v1/chat/completions", "{not json")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_json"
    status, body = raw_request(setup.server.url, "POST", "/v1/chat/completions", "[1, 2]")
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
def test_bad_parameters_are_400_naming_the_parameter(setup, change, param, code):
    body = {"model": "main", "messages": [{"role": "user", "content": "hi"}], **change}
    status, answer = raw_request(setup.server.url, "POST", "/v1/chat/completions", json.dumps(body))
    assert status == 400, answer
    assert answer["error"]["param"] == param and answer["error"]["code"] == code


def test_context_too_long_is_400(setup):
    with pytest.raises(openai.BadRequestError) as caught:
        setup.client().chat.completions.create(model="main", messages=[{"role": "user", "content": "a" * 5000}])
    error = caught.value.body
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert error["message"].startswith("This model's maximum context length is 4096 tokens. However, you requested")
    with pytest.raises(openai.BadRequestError) as caught:
        greedy(setup, setup.client(), "main", tokens=5000)
    assert caught.value.body["code"] == "context_length_exceeded"


def test_api_key_is_required_when_set(setup):
    with pytest.raises(openai.AuthenticationError) as caught:
        greedy(setup, setup.client("wrong-key", keyed=True), "main", tokens=2)
    assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
    status, body = raw_request(setup.keyed.url, "GET", "/v1/models")
    assert status == 401 and body["error"]["message"].startswith("You didn't provide an API key")
    assert greedy(setup, setup.client(API_KEY, keyed=True), "main", tokens=2).usage.completion_tokens == 2
    status, page = raw_request(setup.keyed.url, "GET", "/")
    assert status == 401 and "<form method='post' action='/bgit/login'>" in page
    status, _ = raw_request(setup.keyed.url, "GET", "/bgit/stats", headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200


def test_foreign_host_and_origin_are_refused(setup):
    status, body = raw_request(setup.server.url, "GET", "/v1/models", headers={"Host": "attacker.example:80"})
    assert status == 403 and body["error"]["code"] == "forbidden_host"
    status, body = raw_request(setup.server.url, "POST", "/v1/chat/completions", "{}",
                               headers={"Origin": "http://attacker.example"})
    assert status == 403 and body["error"]["code"] == "forbidden_origin"


def test_non_loopback_bind_without_a_key_is_refused(setup, monkeypatch):
    from bgit.cli.main import cli

    import bgit.serve.server

    def must_not_listen(*args, **kwargs):
        raise AssertionError("bgit serve tried to listen on a non-loopback address without a key")
    monkeypatch.setattr(bgit.serve.server, "bind", must_not_listen)  # a broken check fails, never listens
    monkeypatch.chdir(setup.repo.root)
    monkeypatch.delenv("BGIT_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: refusing to listen on 0.0.0.0 without an API key: pass --api-key or "
                                     "set BGIT_API_KEY (only loopback addresses are served without one)")


# -- a client that goes away ----------------------------------------------------------------

def _wait_idle(setup, seconds: float = 20.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stats = setup.stats()
        if stats["active"] == 0 and stats["queued"] == 0:
            return stats
        time.sleep(0.05)
    raise AssertionError(f"still generating: {setup.stats()}")


def _wait_active(setup, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while setup.stats()["active"] == 0:
        assert time.monotonic() < deadline, "the request never started"
        time.sleep(0.02)


def test_client_disconnect_mid_stream_stops_generation(setup):
    before = _wait_idle(setup)
    host, port = setup.server.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/v1/chat/completions", body=json.dumps({
        "model": "main", "messages": [{"role": "user", "content": "go on"}], "max_tokens": 4000,
        "temperature": 0, "stream": True, "ignore_eos": True}), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data: ")
    _wait_active(setup)
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    after = _wait_idle(setup)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["tokens"] - before["tokens"] < 4000


def test_client_disconnect_while_waiting_for_a_whole_answer_stops_generation(setup):
    before = _wait_idle(setup)
    host, port = setup.server.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"model": "base", "prompt": "go", "max_tokens": 4000, "ignore_eos": True}).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        _wait_active(setup)
    after = _wait_idle(setup)
    assert after["cancelled"] == before["cancelled"] + 1
    assert after["tokens"] - before["tokens"] < 4000


def test_the_web_login_sets_a_session_cookie_that_opens_the_page(setup):
    status, page = raw_request(setup.keyed.url, "POST", "/bgit/login", "key=wrong",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 401 and "Wrong API key." in page
    host, port = setup.keyed.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/bgit/login", body=f"key={API_KEY}",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    cookie = response.getheader("Set-Cookie")
    connection.close()
    assert response.status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert API_KEY not in cookie
    status, page = raw_request(setup.keyed.url, "GET", "/", headers={"Cookie": cookie.split(";")[0]})
    assert status == 200 and "bake b" in page and 'data-model="main"' in page


def test_bgit_serve_command_listens_prints_its_url_and_stops_on_ctrl_c(setup):
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "bgit", "serve", "main", "--port", "0"], cwd=setup.repo.root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "BGIT_API_KEY": ""})
    try:
        first = process.stdout.readline()
        assert first.startswith("serving main, base (base model ") and first.rstrip().endswith("/v1"), first
        url = first.split(" at ")[1].strip().removesuffix("/v1")
        assert url.startswith("http://127.0.0.1:")
        assert process.stdout.readline().startswith(f"web page: {url}/")
        status, models = raw_request(url, "GET", "/v1/models")
        assert status == 200 and [m["id"] for m in models["data"]] == ["main", "base"]
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.rstrip().endswith("Interrupted.") and "Traceback" not in stderr, stderr


def test_bgit_serve_json_prints_where_it_listens(setup):
    import json
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "bgit", "serve", "main", "--port", "0", "--json"],
                               cwd=setup.repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "BGIT_API_KEY": ""})
    try:
        info = json.loads(process.stdout.readline())
        assert info["models"] == ["main", "base"] and info["url"].startswith("http://127.0.0.1:")
        status, models = raw_request(info["url"], "GET", "/v1/models")
        assert status == 200 and [m["id"] for m in models["data"]] == ["main", "base"]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


def test_page_lists_the_bakes_with_closure_and_serves_their_plots_and_prompts(setup, tmp_path):
    import urllib.request

    from bgit.evaluate import EvalResult, write_eval
    from evaluate_helpers import SYSTEM, png_ok

    write_eval(setup.repo, setup.shas["a"], EvalResult(closure=0.8766, commit=setup.shas["a"]))
    status, data = raw_request(setup.server.url, "GET", "/bgit/bakes")
    assert status == 200 and data["base_model"] == str(setup.base)
    bakes = {b["commit"]: b for b in data["bakes"]}
    assert set(bakes) >= {setup.shas["a"], setup.shas["b"]}
    assert bakes[setup.shas["a"]]["closure"] == 0.8766 and bakes[setup.shas["a"]]["refs"] == ["v1"]
    assert bakes[setup.shas["b"]]["model"] == "main" and bakes[setup.shas["b"]]["targets"] == ["terse"]
    status, page = raw_request(setup.server.url, "GET", "/")
    assert status == 200 and '<td class="closure">0.877</td>' in page and "bake a" in page
    status, prompts = raw_request(setup.server.url, "GET", f"/bgit/bakes/{setup.shas['b']}/prompts")
    assert prompts["targets"] == [{"target": "terse", "teacher": [{"role": "system", "content": SYSTEM}],
                                   "student": [], "teacher_tools": False}]
    for plot in ("loss", "weights"):
        with urllib.request.urlopen(f"{setup.server.url}/bgit/bakes/{setup.shas['b']}/{plot}.png") as response:
            assert response.headers["Content-Type"] == "image/png"
            (tmp_path / f"{plot}.png").write_bytes(response.read())
        assert png_ok(tmp_path / f"{plot}.png")
    status, error = raw_request(setup.server.url, "GET", f"/bgit/bakes/{'0' * 40}/loss.png")
    assert status == 404 and error["error"]["code"] == "model_not_found"
