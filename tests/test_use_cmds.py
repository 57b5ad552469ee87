"""The use commands through the real CLI (click runner) on real bake commits."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from evaluate_helpers import build_history, png_ok


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return build_history(tmp_path_factory.mktemp("use_cmds"))


@pytest.fixture
def run(history, monkeypatch):
    from bgit.cli.main import cli

    repo = history[0]
    monkeypatch.chdir(repo.root)

    def invoke(*args, input=None):
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return invoke


def test_diff_text_json_and_plot(run, history, tmp_path):
    text = run("diff")
    assert text.exit_code == 0, text.output
    assert "~ BAKE.optimizer.learning_rate: \"1e-3\" -> \"5e-4\"" in text.output
    assert "terse: stims 6 -> 7 (+1 -0), rollout rows 6 -> 7, tokens 30 -> 35" in text.output
    assert "+ 7ff06f61f695 'new one'" in text.output
    assert "modules changed 3/8" in text.output
    as_json = run("diff", "HEAD~1", "HEAD", "--json", "--plot", str(tmp_path / "heat.png"))
    data = json.loads(as_json.stdout)
    assert data["a"]["commit"] == history[3]["a"] and data["b"]["commit"] == history[3]["b"]
    assert data["weights"]["total"]["changed"] == 3
    assert png_ok(tmp_path / "heat.png")
    one_arg = json.loads(run("diff", "HEAD~1", "--json").stdout)  # REF against the (clean) work tree
    assert one_arg["b"] == {"ref": "work tree", "commit": None} and one_arg["weights"] == data["weights"]


def test_diff_behaviour(run):
    result = run("diff", "--behaviour", "--json")
    assert result.exit_code == 0
    behaviour = json.loads(result.stdout)["behaviour"]
    assert behaviour["kl_a_b"] > 0 and behaviour["stims"] == 2
    text = run("diff", "HEAD", "HEAD", "--behaviour").output
    assert "KL(A‖B) per response token: 0 (2 stims" in text


def test_eval_stores_a_note_shown_by_git_log(run, history):
    from bgit.evaluate import read_eval

    repo = history[0]
    result = run("eval", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "eval_stims" and data["stims"] == 2 and data["kl_prompted_base"] > 0
    assert read_eval(repo, "HEAD").to_json() == data  # the note holds exactly what --json printed
    log = subprocess.run(["git", "log", "--notes=bgit-eval", "-1"], cwd=repo.root, capture_output=True,
                         text=True, check=True).stdout
    assert '"closure"' in log
    text = run("eval", "HEAD~1", "--no-save")
    assert "KL closure" in text.output and "KL(prompted‖reprompted)" in text.output


def test_eval_longer_than_trained_shows_the_tokens_past_it(run, tmp_path):
    from bgit.cli.render import fmt

    (tmp_path / "stims.txt").write_text("why so?\nand then\n")
    args = ("eval", "HEAD", "--no-save", "--stims", str(tmp_path / "stims.txt"), "--max-tokens", "12")
    data = json.loads(run(*args, "--json").stdout)
    past = data["past_trained_length"]  # TARGET.max_tokens is 6
    assert past["tokens"] == data["tokens"] - 6 * data["stims"] > 0 and past["closure"] is not None
    text = run(*args).output
    assert (f"closure past the trained length (TARGET.max_tokens) {fmt(past['closure'])} on {past['tokens']} "
            f"of {data['tokens']} tokens") in text
    short = json.loads(run("eval", "HEAD", "--no-save", "--stims", str(tmp_path / "stims.txt"), "--json").stdout)
    assert short["past_trained_length"] is None  # sampled to the trained length


def test_eval_no_save_leaves_no_note(run, history):
    from bgit.evaluate import read_eval

    repo = history[0]
    before = read_eval(repo, history[3]["a"])
    assert run("eval", "HEAD~1", "--no-save", "--json").exit_code == 0
    assert read_eval(repo, history[3]["a"]) == before


def test_generate_json_ref_argument_and_scale_zero_is_base(run, history):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = json.loads(run("generate", "HEAD~1", "hi", "sky", "--json", "--max-tokens", "5").stdout)
    assert first["commit"] == history[3]["a"]
    assert [a["prompt"] for a in first["answers"]] == ["hi", "sky"]
    assert all(a["tokens"] <= 5 for a in first["answers"])
    again = json.loads(run("generate", "--ref", "HEAD~1", "hi", "--json", "--max-tokens", "5").stdout)
    assert again["answers"][0] == first["answers"][0]  # greedy is deterministic
    base_dir = history[1]
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
    if tokenizer.eos_token_id in out:
        out = out[: out.index(tokenizer.eos_token_id)]
    base_answer = json.loads(run("generate", "hi", "--scale", "0", "--json", "--max-tokens", "6").stdout)
    assert base_answer["answers"][0]["response"] == tokenizer.decode(out, skip_special_tokens=True)
    text = run("generate", "hi", "sky", "--max-tokens", "3")
    assert text.exit_code == 0 and "> hi" in text.stdout and "> sky" in text.stdout


def test_chat_through_stdin(run):
    script = "/help\nhi\n/status\n/system Be kind.\n/status\n/clear\n/bogus\n/quit\nnever answered\n"
    result = run("chat", "--max-tokens", "4", "--scale", "0.5", input=script)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "/system TEXT" in out
    assert "scale=0.5 system=none turns=1" in out
    assert "system='Be kind.' turns=0" in out
    assert "(conversation cleared)" in out
    assert "unknown command /bogus" in out


def test_export_refuses_non_empty_out(run, tmp_path):
    out = tmp_path / "adapter"
    assert run("export", "HEAD", str(out)).exit_code == 0
    assert (out / "adapter_config.json").is_file()
    again = CliRunner().invoke(__import__("bgit.cli.main", fromlist=["cli"]).cli, ["export", "HEAD", str(out)])
    assert again.exit_code == 1
    assert again.output.strip() == f"Error: {out} exists and is not empty"


def test_metrics_terminal_json_and_png(run, tmp_path):
    text = run("metrics")
    assert text.exit_code == 0
    assert "train_kl  █" in text.output and "epoch 0: 0.6" in text.output
    data = json.loads(run("metrics", "HEAD~1", "--json", "--plot", str(tmp_path / "kl.png")).stdout)
    assert len(data["train"]) == 8 and data["eval"][-1]["eval_kl"] == pytest.approx(0.35)
    assert png_ok(tmp_path / "kl.png")


def test_not_a_bake(tmp_path, monkeypatch):
    from bgit.cli.main import cli
    from bgit.repo import Repository

    repo = Repository.init(tmp_path / "plain")
    (repo.root / "notes.txt").write_text("x")
    repo.add(["notes.txt"])
    repo.commit("plain")
    monkeypatch.chdir(repo.root)
    result = CliRunner().invoke(cli, ["eval"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: HEAD is not a bake commit: it has no adapter/adapter_model.safetensors"
