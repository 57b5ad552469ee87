"""Adapters trained elsewhere and committed by hand (adapter_config.json + adapter_model.safetensors,
no bake.yml): export, generate, chat, eval (--stims) and diff work, the base model coming from
adapter_config.json's base_model_name_or_path or --base."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from bgit import api
from bgit.cli.main import cli
from evaluate_helpers import input_yml, make_adapter, make_base_model
from repo_helpers import sha256

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def run(cwd, monkeypatch, *args, code: int = 0, input: str | None = None):
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == code, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hand")
    base = make_base_model(tmp / "base")
    root = api.init(tmp / "repo", example=None).root
    for seed, message in ((1, "adapter from elsewhere"), (2, "a retrained one")):
        adapter = make_adapter(base, tmp / f"adapter-{seed}", seed=seed)
        (root / "adapter").mkdir(exist_ok=True)
        for name in ADAPTER_FILES:
            shutil.copyfile(adapter / name, root / "adapter" / name)
        api.add(root, ["adapter"])
        api.commit(root, message)
    (tmp / "input.yml").write_text(input_yml(base))      # the teacher prompt, kept outside the repository
    (tmp / "stims.txt").write_text("hello there\nwhat is tea?\n")
    return {"root": root, "base": base, "tmp": tmp, "adapter": tmp / "adapter-2"}


def test_export_generate_and_chat(hand, tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bgit.evaluate.chat import answer

    root = hand["root"]
    assert json.loads((root / "adapter/adapter_config.json").read_text())["base_model_name_or_path"] == str(hand["base"])
    out = run(root, monkeypatch, "export", "HEAD", str(tmp_path / "peft"), "--json").output
    assert json.loads(out)["path"] == str(tmp_path / "peft")
    assert {n: sha256(tmp_path / "peft" / n) for n in ADAPTER_FILES} == {n: sha256(hand["adapter"] / n)
                                                                         for n in ADAPTER_FILES}
    run(root, monkeypatch, "export", "HEAD", str(tmp_path / "merged"), "--format", "merged")
    assert (tmp_path / "merged" / "config.json").is_file()

    generated = json.loads(run(root, monkeypatch, "generate", "HEAD", "hello there", "--max-tokens", "6",
                               "--json").output)
    base = AutoModelForCausalLM.from_pretrained(str(hand["base"]), torch_dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(base, str(hand["adapter"])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(hand["base"]))
    expected = answer(model, tokenizer, "hello there", max_tokens=6, temperature=0.0)
    assert expected["tokens"] > 0 and expected["response"].strip()
    assert generated["answers"][0]["response"] == expected["response"]

    chatted = run(root, monkeypatch, "chat", "HEAD", "--max-tokens", "6", input="hello there\n/quit\n")
    assert expected["response"] in chatted.output


def test_eval_with_stims_and_a_config_and_diff(hand, monkeypatch):
    root, tmp = hand["root"], hand["tmp"]
    no_prompt = run(root, monkeypatch, "eval", "--stims", str(tmp / "stims.txt"), code=1).output
    assert no_prompt == ("Error: HEAD is not a bake commit: it has no input.yml (eval needs the teacher prompt: "
                         "pass --config FILE)\n")
    no_stims = run(root, monkeypatch, "eval", "--config", str(tmp / "input.yml"), code=1).output
    assert no_stims == "Error: HEAD: no held-out stims to evaluate on (bake.yml names none); pass --stims FILE\n"
    results = json.loads(run(root, monkeypatch, "eval", "--stims", str(tmp / "stims.txt"), "-c",
                             str(tmp / "input.yml"), "--json").output)
    assert results["source"] == "file" and results["stims"] == 2 and set(results["targets"]) == {"terse"}
    assert results["closure"] is not None and results["kl_prompted_base"] > 0
    assert results["base_model"] == str(hand["base"])
    assert api.log(root)[0].eval.closure == pytest.approx(results["closure"])   # saved as the git note

    diff = json.loads(run(root, monkeypatch, "diff", "HEAD~1", "HEAD", "--json").output)
    total = diff["weights"]["total"]
    assert total["changed"] == total["modules"] > 0 and total["relative"] > 0
    assert diff["config"] == [] and diff["datasets"] == []


def test_base_from_the_option_when_the_adapter_config_names_none(hand, tmp_path, monkeypatch):
    root = api.init(tmp_path / "repo", example=None).root
    (root / "adapter").mkdir()
    shutil.copyfile(hand["adapter"] / "adapter_model.safetensors", root / "adapter/adapter_model.safetensors")
    config = json.loads((hand["adapter"] / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = None
    (root / "adapter/adapter_config.json").write_text(json.dumps(config))
    api.add(root, all=True)
    api.commit(root, "an adapter without its base")
    refused = run(root, monkeypatch, "generate", "HEAD", "hi", code=1).output
    assert refused == ("Error: HEAD has no bake.yml and its adapter_config.json names no base model "
                       "(base_model_name_or_path): pass --base NAME\n")
    with_base = json.loads(run(root, monkeypatch, "generate", "HEAD", "hi", "--max-tokens", "3", "--json",
                               "--base", str(hand["base"])).output)
    assert len(with_base["answers"]) == 1
