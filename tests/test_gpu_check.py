"""bench/gpu_check.py in its CPU tiny mode: every phase runs, and the table and the JSON agree."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.py"
STIMS, TOKENS = 8, 16  # the tiny mode's defaults


def table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model  "))
    assert lines[header].split() == ["model", "params", "phase", "implementation", "tokens", "seconds", "tokens/s",
                                     "peak", "GiB", "status"]
    return [line.split() for line in lines[header + 1: header + 4]]


def test_tiny_mode_runs_every_phase_and_prints_what_it_writes(tmp_path):
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], capture_output=True,
                            text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert (report["mode"], report["environment"]["device"]) == ("tiny", "cpu")
    rollout, bgit, trl = report["rows"]
    assert (rollout["phase"], bgit["phase"], trl["phase"]) == ("rollout", "train", "train")
    assert 0.5e6 < rollout["params"] < 2e6  # a ~1M-parameter Llama
    assert rollout["status"] == bgit["status"] == "ok"
    assert rollout["tokens"] == STIMS * TOKENS  # min_new_tokens: every trajectory has all its tokens
    assert bgit["tokens"] == STIMS * TOKENS  # one epoch over every response token
    assert bgit["details"]["lora_r"] == 16 and bgit["details"]["max_length"] == 512
    assert bgit["details"]["autocast"] is False and bgit["details"]["final_train_kl"] > 0
    for row in (rollout, bgit):
        assert row["tokens_per_s"] == pytest.approx(row["tokens"] / row["seconds"], rel=0.01)
        assert row["peak_gib"] is None
    if importlib.util.find_spec("trl") is not None:
        assert trl["status"] == "ok" and trl["tokens"] == STIMS * TOKENS
        assert trl["details"]["gradient_checkpointing"] is False and trl["details"]["bf16"] is False
        assert report["ratios"] == [{"model": "tiny", "peak_memory": None,
                                     "tokens_per_s": round(bgit["tokens_per_s"] / trl["tokens_per_s"], 2)}]
    else:
        assert trl["status"].startswith("skipped: trl is not importable")
    printed = table_rows(result.stdout)
    for row, cells in zip(report["rows"], printed):
        assert cells[0] == "tiny" and cells[2] == row["phase"]
        assert row["implementation"].split() == cells[3: 3 + len(row["implementation"].split())]
        tail = cells[3 + len(row["implementation"].split()):]
        assert tail[:4] == [str(row["tokens"]), f"{row['seconds']:.2f}", f"{row['tokens_per_s']:.1f}", "-"]
        assert " ".join(tail[4:]) == row["status"]


def test_without_trl_the_gkd_row_is_skipped_with_the_reason(tmp_path, monkeypatch, capsys):
    import torch

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look their module up
    spec.loader.exec_module(gpu_check)
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError
    threads = torch.get_num_threads()
    assert gpu_check.main(["--tiny", "--out", str(tmp_path / "report.json")]) == 0
    assert torch.get_num_threads() == threads  # the tiny mode's one thread is given back
    report = json.loads((tmp_path / "report.json").read_text())
    rollout, bgit, trl = report["rows"]
    assert rollout["status"] == bgit["status"] == "ok"
    assert re.match(r"skipped: trl is not importable \((ImportError|ModuleNotFoundError): .*'trl", trl["status"])
    assert trl["status"].endswith("pip install 'bgit[bench]'") and trl["tokens"] == 0
    assert report["ratios"] == [] and report["environment"]["trl"] is None
    assert trl["status"] in capsys.readouterr().out
