"""An input.yml as users of the hosted prompt-baking tool write it (every documented key) is
accepted as written: each key with its meaning, or with exactly one notice."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.config import load_config

BREAD = Path(__file__).parent / "data" / "bread_full.yml"

# (line, key, the start of its notice): keys that mean nothing here. Every other key of the
# file takes effect (tests/test_bake_bread.py bakes the file).
EXPECTED_NOTICES = [
    (77, "BAKE.model.save_name", "has no effect here"),
    (79, "BAKE.model.parent_model_name", "has no effect here"),
    (87, "BAKE.scheduler.lr", "deprecated and ignored"),
    (92, "BAKE.checkpoint[0].type", "has no effect here"),
    (93, "BAKE.checkpoint[0].output_dir", "has no effect here"),
    (100, "BAKE.data.type", "has no effect here"),
    (101, "BAKE.data.sources", "has no effect here"),
    (107, "BAKE.data.dl_num_workers", "has no effect here"),
    (108, "BAKE.data.num_proc", "has no effect here"),
    (110, "BAKE.data.cache_dir", "has no effect here"),
    (114, "BAKE.wandb", "has no effect here"),
]


def test_every_key_of_the_hosted_schema_is_accepted_with_the_expected_notices():
    config = load_config(BREAD)
    got = [(n.line, n.key, n.message) for n in config.notices]
    assert [(line, key) for line, key, _ in got] == [(line, key) for line, key, _ in EXPECTED_NOTICES]
    for (_, key, message), (_, _, start) in zip(got, EXPECTED_NOTICES):
        assert message.startswith(start), (key, message)
    lines = BREAD.read_text().splitlines()
    for line, key, _ in got:  # each notice points at the line of its key (of the generator: no personas)
        expected = key.rsplit(".", 1)[-1].split("[")[0] + ":"
        assert lines[line - 1].strip().removeprefix("- ").startswith(expected), (line, key)


def test_the_keys_that_take_effect_are_parsed_into_the_config():
    config = load_config(BREAD)
    (target,) = config.targets
    bake = config.bake
    assert [g.type for g in target.generators] == ["oneshot_qs", "hardcoded", "from_dataset", "persona", "custom"]
    assert target.generators[1].stims == ["What is the sea?", "Where is the treasure?"]  # written `questions`
    assert target.generators[4].template == "Ask ${numq} questions about: ${prompt_u}"  # template_content
    assert (target.num_traj_per_stimulus, target.extra_kwargs) == (2, {"top_p": 0.9})
    assert config.prompt.student_messages == [{"role": "system", "content": ""}]
    assert config.prompt.teacher_tools[0]["function"]["name"] == "get_tide"
    assert (bake.lora.r, bake.lora.lora_alpha, bake.lora.bias) == (32, 16.0, "none")
    assert bake.model.peft_config == {"use_rslora": True}
    assert (bake.model.attn_implementation, bake.model.disable_activation_checkpoint) == ("sdpa", False)
    assert config.model.dtype == bake.model.dtype == "bfloat16"  # BAKE.model.dtype sets the one model's dtype
    assert (bake.optimizer.type, bake.optimizer.learning_rate, bake.scheduler.type) == ("adamw", 0.01, "huggingface")
    assert (bake.deepspeed.enabled, bake.deepspeed.zero_stage) == (True, 2)
    (checkpoint,) = bake.checkpoint
    assert (checkpoint.save_every_n_steps, checkpoint.save_every_n_epochs, checkpoint.auto_resume) == (50, 1, True)
    assert (bake.data.beta, bake.data.temperature, bake.data.max_length) == (0.0, 1.0, 3000)
    assert (bake.data.train_eval_split, bake.data.seed) == (1.0, 42)  # written [1, 0]
    assert (bake.train_log_iter_interval, bake.eval_interval, bake.total_trajectories) == (1, 0, 3600)


def test_bgit_validate_prints_the_summary_and_one_notice_per_key():
    result = CliRunner().invoke(cli, ["validate", str(BREAD)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"{BREAD}: ok"
    assert "2 trajectories per stim" in result.stdout
    notices = result.stderr.splitlines()
    assert len(notices) == len(EXPECTED_NOTICES)
    assert notices[0] == (f"Notice: {BREAD}:77: BAKE.model.save_name: has no effect here: a bake is its commit; "
                          "name it with `bgit tag NAME`")
    data = json.loads(CliRunner().invoke(cli, ["validate", str(BREAD), "--json"]).stdout)
    assert [(n["line"], n["key"]) for n in data["notices"]] == [(line, key) for line, key, _ in EXPECTED_NOTICES]


def test_one_trajectory_is_singular():
    result = CliRunner().invoke(cli, ["validate", str(Path(__file__).parent.parent / "examples" / "french.yml")])
    assert result.exit_code == 0, result.output
    assert " 1 trajectory per stim" in result.stdout or " 2 trajectories per stim" in result.stdout
    assert "trajectorys" not in result.stdout
