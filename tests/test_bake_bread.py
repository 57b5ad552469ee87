"""The complete Bread-style input.yml (tests/data/bread_full.yml, every documented key) validates
and bakes through `bgit bake` on tiny models: a trained question writer as the parent (it
writes the oneshot_qs, persona and custom stims), another model sampling the rollouts
(TARGET.model_name) and a third one as the distill student. Only the model names and sizes
are replaced; every key of the file stays."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bread_helpers import add_named_dataset, train_question_writer
from evaluate_helpers import make_base_model

DATA = Path(__file__).parent / "data"
GSM8K = [f"What is {i} plus {i}?" for i in range(6)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bread-models")
    return (train_question_writer(root / "writer", steps=300), make_base_model(root / "sampler", seed=2),
            make_base_model(root / "student", seed=1))


def bread_file(writer: Path, sampler: Path, student: Path) -> str:
    """bread_full.yml with local tiny models and test-sized counts."""
    text = (DATA / "bread_full.yml").read_text()
    replacements = [
        ("\n  model_name: smollm2-135m", f"\n  model_name: {sampler}"), ("model: smollm2-135m", f"model: {writer}"),
        ("student_model_path: smollm2-135m", f"student_model_path: {student}"),
        ("parent_model_name: smollm2-135m", f"parent_model_name: {writer}"),
        ("max_tokens: 64", "max_tokens: 8"), ("numq: 8", "numq: 3"), ("numq: 20", "numq: 3"),
        ("numq: 4", "numq: 2"), ("dtype: bfloat16", "dtype: float32"), ("max_tokens: 256", "max_tokens: 160"), ("max_tokens: 32", "max_tokens: 4"), ("total_trajectories: 3600", "total_trajectories: 16"),
        ('template_content: "Ask ${numq} questions about: ${prompt_u}"',
         'template_content: "Ask ${numq} questions about: ${prompt_u}"\n      numq: 2'),
    ]
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return f"MODEL:\n  base: {writer}\n\n" + text


def bgit(cwd, env, *args):
    result = subprocess.run([sys.executable, "-m", "bgit", *args], cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"bgit {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
    return result


def test_the_complete_bread_file_validates_and_bakes(tmp_path, models):
    writer, sampler, student = models
    cache = tmp_path / "hf-datasets"
    add_named_dataset(cache, "gsm8k", {"question": GSM8K, "answer": [str(2 * i) for i in range(6)]})
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_DATASETS_OFFLINE": "1"}
    root = tmp_path / "repo"
    bgit(tmp_path, env, "init", str(root))
    (root / "input.yml").write_text(bread_file(writer, sampler, student))
    shutil.copy(DATA / "bread_template.txt", root / "bread_template.txt")

    validated = bgit(root, env, "validate")
    assert validated.stdout.startswith("input.yml: ok") or ": ok" in validated.stdout.splitlines()[0]
    assert "Error" not in validated.stderr
    assert all(line.startswith("Notice:") and ("has no effect here" in line or "deprecated" in line)
               for line in validated.stderr.splitlines())

    # stdout is bgit's JSON alone: DeepSpeed's own log lines (BAKE.deepspeed) go to stderr
    report = json.loads(bgit(root, env, "bake", "-m", "pirate", "--json").stdout)
    assert [(p["phase"], p["cached"]) for p in report["phases"]] == [("stim", False), ("rollout", False),
                                                                    ("train", False)]
    (stims,) = json.loads(bgit(root, env, "stim", "--json").stdout)
    rows = stims["rows"]
    # the test writer knows 18 questions, so custom's (run last) are often already taken by
    # oneshot_qs/persona and dropped as duplicates; custom's meaning: tests/test_stim_bread.py
    assert {row["generator"] for row in rows} >= {"oneshot_qs", "hardcoded", "from_dataset", "persona"}
    counts = {kind: sum(row["generator"] == kind for row in rows) for kind in ("hardcoded", "from_dataset")}
    assert counts == {"hardcoded": 2, "from_dataset": 3}
    assert {row["text"] for row in rows if row["generator"] == "from_dataset"} <= set(GSM8K)

    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["base_model"]["name"] == str(writer) and record["student_model"]["name"] == str(student)
    committed = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.split()
    assert "bread_template.txt" in committed and "input.yml" in committed  # the template_path file is an input
    assert record["metrics"]["final_train_kl"] is not None
