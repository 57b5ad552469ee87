"""The trainer through a DeepSpeed engine on CPU: gloo backend, one process.

Runs in a subprocess so that DeepSpeed's process group and patches stay out of the test
process. Stage 0 and ZeRO-2 must lower the KL exactly as the plain torch loop does, and a
crashed DeepSpeed run must resume from its checkpoint to the same result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'bgit[deepspeed]')")

SCRIPT = r"""
import json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from train_helpers import bake_settings, baking_examples, tiny_llama
from bgit.train import train_adapter

model = tiny_llama(seed=0)
examples = baking_examples(model, 8, seed=1)
out = {}
for name, stage in (("torch", None), ("zero0", 0), ("zero2", 2)):
    settings = bake_settings(epochs=3, micro_batch_size=2, gradient_accumulation_steps=2,
                             deepspeed={"enabled": stage is not None, "zero_stage": stage or 0})
    with tempfile.TemporaryDirectory() as work:
        result = train_adapter(model, None, examples, examples, settings, work)
        out[name] = [row["eval_kl"] for row in result.metrics if "eval_kl" in row]
        if stage == 2:
            calls = []
            def crash(n, total, **info):
                calls.append(n)
                if len(calls) == 3:
                    raise KeyboardInterrupt
            with tempfile.TemporaryDirectory() as work2:
                try:
                    train_adapter(model, None, examples, examples, settings, work2, progress=crash)
                except KeyboardInterrupt:
                    pass
                again = train_adapter(model, None, examples, examples, settings, work2)
                out["zero2_resumed"] = [row["eval_kl"] for row in again.metrics if "eval_kl" in row]
                out["resumed_from"] = again.resumed_from
print("RESULT " + json.dumps(out))
"""


def test_deepspeed_cpu_zero0_and_zero2_lower_kl_like_plain_torch():
    tests_dir = Path(__file__).parent
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONPATH=str(tests_dir.parent))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tests_dir)], capture_output=True, text=True,
                          env=env, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["torch"][-1] < 0.5 * out["torch"][0]
    for name in ("zero0", "zero2", "zero2_resumed"):
        assert out[name] == pytest.approx(out["torch"], abs=1e-5), name
    assert out["resumed_from"] and out["resumed_from"].endswith("epoch-0001")
