"""Distill baking (BAKE.model.student_model_path) through `bgit bake` on tiny random models:
the parent model with the teacher prompt is the teacher, a different student model without
the prompt is trained; the student needs the parent's tokenizer. Real repositories,
subprocesses and PEFT adapters."""

import json

import pytest
import torch
import yaml

from bgit.util.files import hash_file
from evaluate_helpers import byte_tokenizer, make_base_model
from rollout_helpers import char_tokenizer, tiny_llama
from test_bake_pipeline import bgit, git, write_config


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_base_model(root / "teacher", seed=0), make_base_model(root / "student", seed=1)


def with_student(root, student):
    config = yaml.safe_load((root / "input.yml").read_text())
    config["BAKE"]["model"]["student_model_path"] = str(student)
    (root / "input.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def plan(root):
    return {line.split()[0]: line.split()[1] for line in bgit(root, "bake", "--dry-run").stdout.splitlines()}


def test_a_distill_bake_trains_the_student_on_the_teachers_rollouts(tmp_path, models):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    teacher, student = models
    root = tmp_path / "repo"
    bgit(tmp_path, "init", str(root))
    write_config(root, teacher, epochs=3, lr=1e-2)
    bgit(root, "bake", "-m", "plain")
    plain_adapter = hash_file(root / "adapter" / "adapter_model.safetensors")
    with_student(root, student)
    # the teacher's rollouts are reused: only training depends on the student
    assert plan(root) == {"stim[caps]": "cached", "rollout[caps]": "cached", "train": "would"}
    report = json.loads(bgit(root, "bake", "-m", "distilled", "--json").stdout)
    assert [p["cached"] for p in report["phases"]] == [True, True, False]

    record = yaml.safe_load((root / "bake.yml").read_text())
    assert record["base_model"]["name"] == str(teacher) and record["student_model"]["name"] == str(student)
    assert record["metrics"]["eval_closure"] > 0  # the student moved towards the prompted teacher

    ids = torch.tensor([[5, 17, 40, 99, 3, 250, 7]])
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(student, torch_dtype=torch.float32).eval()
        before = plain(input_ids=ids).logits
        baked = PeftModel.from_pretrained(plain, str(root / "adapter")).eval()(input_ids=ids).logits
    assert not torch.allclose(before, baked)  # the adapter loads on the student (its shapes) and acts
    # same rollouts, settings and seed: only the trained model differs from the plain bake
    assert hash_file(root / "adapter" / "adapter_model.safetensors") != plain_adapter

    evaluated = json.loads(bgit(root, "eval", "--json").stdout)
    assert evaluated["closure"] > 0


def test_a_student_with_another_tokenizer_is_refused_in_one_line(tmp_path, models):
    teacher, _ = models
    tokenizer = char_tokenizer()
    other = tmp_path / "char-student"
    tiny_llama(len(tokenizer), eos_token_id=tokenizer.eos_token_id).save_pretrained(other)
    tokenizer.save_pretrained(other)
    root = tmp_path / "repo"
    bgit(tmp_path, "init", str(root))
    write_config(root, teacher)
    with_student(root, other)
    result = bgit(root, "bake", check=False)
    assert result.returncode == 1
    theirs, ours = len(tokenizer.get_vocab()), len(byte_tokenizer().get_vocab())
    assert result.stderr.splitlines()[-1] == (
        f"Error: BAKE.model.student_model_path: {other} does not share the vocabulary of the parent model "
        f"{teacher} ({theirs} tokens, not {ours})")
    assert "Traceback" not in result.stderr
    assert git(root, "rev-list", "--all") == ""
