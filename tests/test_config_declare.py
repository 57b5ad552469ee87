"""Each setting declared once: YAML, Python and the trainer get the same checks and defaults."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.config import ConfigError, ConfigValueError, config_to_dict, from_dict, parse_config
from bgit.config.declare import declared_fields
from bgit.config.schema import (HF_SCHEDULERS, BakeConfig, DataConfig, DeepSpeedConfig, GeneratorConfig,
                                InputConfig, LoraConfig, OptimizerConfig, SchedulerConfig, TargetConfig)

GOOD = """\
PROMPT:
  teacher:
    messages:
      - role: system
        content: You are Yoda.
TARGET:
  name: yoda
  generators:
    - type: hardcoded
      stims: ["Hello?", "How are you?"]
BAKE:
  name: yoda-bake
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "input.yml")
    return str(info.value)


def nested(path: str, value: str) -> str:
    """YAML for ``path`` (dotted) = ``value``, indented under BAKE/TARGET as GOOD lays them out."""
    *parents, last = path.split(".")
    lines = [f"{'  ' * i}{part}:" for i, part in enumerate(parents)] + [f"{'  ' * len(parents)}{last}: {value}"]
    return "\n".join(lines) + "\n"


# -- B.4: every number has a range; out-of-range values are refused with the key and line ----------

OUT_OF_RANGE = [
    ("BAKE.epochs", "99999999999999999999999", "must be in [1, 1000], got 99999999999999999999999"),
    ("BAKE.micro_batch_size", "0", "must be in [1, 1024], got 0"),
    ("BAKE.gradient_accumulation_steps", "5000", "must be in [1, 1024], got 5000"),
    ("BAKE.total_trajectories", "100000000", "must be in [1, 10000000], got 100000000"),
    ("BAKE.seed", "-1", "must be in [0, 4294967295], got -1"),
    ("BAKE.model.baked_adapter_config.r", "4096", "must be in [1, 1024], got 4096"),
    ("BAKE.model.baked_adapter_config.lora_alpha", "0", "must be in (0, 65536], got 0"),
    ("BAKE.model.baked_adapter_config.lora_dropout", "1", "must be in [0, 1), got 1"),
    ("BAKE.optimizer.learning_rate", "5", "must be in (0, 1], got 5"),
    ("BAKE.optimizer.weight_decay", "2", "must be in [0, 1], got 2"),
    ("BAKE.optimizer.max_grad_norm", "0", "must be in (0, 10000], got 0"),
    ("BAKE.scheduler.warmup_ratio", "1", "must be in [0, 1), got 1"),
    ("BAKE.data.max_length", "1000000", "must be in [1, 131072], got 1000000"),
    ("BAKE.data.beta", "1.5", "must be in [0, 1], got 1.5"),
    ("BAKE.data.temperature", "0", "must be in (0, 10], got 0"),
    ("BAKE.data.train_eval_split", "0", "must be in (0, 1], got 0"),
    ("BAKE.checkpoint", "[{save_every_n_epochs: 5000}]", None),
    ("BAKE.train_log_iter_interval", "0", "must be in [1, 1000000], got 0"),
    ("BAKE.eval_interval", "-5", "must be in [0, 1000000], got -5"),
    ("BAKE.deepspeed.zero_optimization.stage", "4", "must be in [0, 3], got 4"),
]


@pytest.mark.parametrize("path, value, message", OUT_OF_RANGE)
def test_out_of_range_numbers_are_refused(path, value, message):
    text = GOOD + textwrap.indent(nested(path.removeprefix("BAKE."), value), "  ")
    line = GOOD.count("\n") + path.count(".")  # the value sits on the last line written
    if message is None:  # a list of mappings: the item's key is named
        assert error_of(text) == (f"input.yml:{line}: BAKE.checkpoint[0].save_every_n_epochs: must be in "
                                  "[0, 1000], got 5000")
    else:
        assert error_of(text) == f"input.yml:{line}: {path}: {message}"


TARGET_OUT_OF_RANGE = [
    ("max_tokens", "100000", "must be in [1, 32768], got 100000"),
    ("temperature", "3", "must be in [0, 2], got 3"),
    ("num_traj_per_stimulus", "1000", "must be in [1, 100], got 1000"),
    ("top_k", "5000", "must be in [1, 1000], got 5000"),
    ("max_concurrency", "0", "must be in [1, 1024], got 0"),
]


@pytest.mark.parametrize("key, value, message", TARGET_OUT_OF_RANGE)
def test_out_of_range_target_numbers_are_refused(key, value, message):
    text = GOOD.replace("  name: yoda\n", f"  name: yoda\n  {key}: {value}\n")
    assert error_of(text) == f"input.yml:8: TARGET.{key}: {message}"


def test_out_of_range_generator_numbers_are_refused():
    oneshot = GOOD.replace("    - type: hardcoded\n      stims: [\"Hello?\", \"How are you?\"]\n",
                           "    - type: oneshot_qs\n      numq: NUMQ\n      max_tokens: MAX\n")
    assert error_of(oneshot.replace("NUMQ", "1000000").replace("MAX", "64")) == (
        "input.yml:10: TARGET.generators[0].numq: must be in [0, 100000], got 1000000")
    assert error_of(oneshot.replace("NUMQ", "0").replace("MAX", "64")) == (
        "input.yml:10: TARGET.generators[0].numq: must be at least 1 (0 = all rows is for from_dataset), got 0")
    assert error_of(oneshot.replace("NUMQ", "5").replace("MAX", "99999")) == (
        "input.yml:11: TARGET.generators[0].max_tokens: must be in [1, 32768], got 99999")


# -- the same checks for a config built in Python -----------------------------------------------

PYTHON = [
    (lambda: BakeConfig(epochs=0), "BAKE.epochs: must be in [1, 1000], got 0"),
    (lambda: BakeConfig(epochs="3"), "BAKE.epochs: expected an integer, got '3'"),
    (lambda: BakeConfig(loss="kl"), "BAKE.loss: expected one of topk, full, got 'kl'"),
    (lambda: LoraConfig(r=0), "BAKE.model.baked_adapter_config.r: must be in [1, 1024], got 0"),
    (lambda: OptimizerConfig(betas=[0.9]), "BAKE.optimizer.betas: expected 2 values, got 1"),
    (lambda: OptimizerConfig(betas=[0.9, 1.0]), "BAKE.optimizer.betas: must be in [0, 1), got 1.0"),
    (lambda: SchedulerConfig(type="cosin"),
     "BAKE.scheduler.type: expected one of constant, linear, cosine, huggingface, constant_with_warmup, "
     "cosine_with_restarts, cosine_with_min_lr, polynomial, inverse_sqrt, got 'cosin' (did you mean 'cosine'?)"),
    (lambda: DeepSpeedConfig(enabled=True, zero_stage=4),
     "BAKE.deepspeed.zero_optimization.stage: must be in [0, 3], got 4"),
    (lambda: DataConfig(beta=float("nan")), "BAKE.data.beta: expected a number, got nan"),
    (lambda: TargetConfig(top_k=0, generators=[GeneratorConfig(stims=["hi"])]),
     "TARGET.top_k: must be in [1, 1000], got 0"),
    (lambda: GeneratorConfig(type="oneshot_qs", numq=0),
     "TARGET.generators[].numq: must be at least 1 (0 = all rows is for from_dataset), got 0"),
    (lambda: BakeConfig(parent="head", lora=LoraConfig(bias="all")),
     "BAKE.model.baked_adapter_config.bias: must be none: LoRA biases cannot be concatenated with the bake at "
     "HEAD (BAKE.parent: head)"),
    (lambda: BakeConfig(deepspeed=DeepSpeedConfig(enabled=True), optimizer=OptimizerConfig(type="sgd")),
     "BAKE.optimizer.type: DeepSpeed runs take adamw or adam, got 'sgd'"),
    (lambda: BakeConfig(scheduler=SchedulerConfig(type="polynomial", min_lr_ratio=0.1)),
     "BAKE.scheduler.min_lr_ratio: only linear, cosine, cosine_with_min_lr decay to a floor; set 0 for "
     "scheduler type 'polynomial'"),
    (lambda: from_dict(BakeConfig, {"epoch": 2}), "BAKE.epoch: unknown setting (did you mean 'epochs'?)"),
]


@pytest.mark.parametrize("build, message", PYTHON)
def test_a_config_built_in_python_gets_one_line_errors_naming_the_key(build, message):
    with pytest.raises(ConfigValueError) as info:
        build()
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_python_and_yaml_defaults_are_the_same_objects():
    yaml_config = parse_config(GOOD, "input.yml")
    python_config = InputConfig(prompt=yaml_config.prompt, targets=[TargetConfig(
        name="yoda", generators=[GeneratorConfig(type="hardcoded", stims=["Hello?", "How are you?"])])],
        bake=BakeConfig(name="yoda-bake"))
    assert config_to_dict(python_config) == config_to_dict(yaml_config)
    assert from_dict(InputConfig, config_to_dict(yaml_config)) == yaml_config  # the dict round-trips


def test_lora_alpha_defaults_to_twice_the_final_rank_once():
    assert BakeConfig(lora=LoraConfig(r=8)).lora.lora_alpha == 16.0
    assert BakeConfig(lora=LoraConfig(r=8, lora_alpha=4)).lora.lora_alpha == 4.0
    # peft_config is merged over baked_adapter_config: its r wins, and alpha follows that r
    text = GOOD + "  model:\n    baked_adapter_config: {r: 8}\n    peft_config: {r: 4, use_rslora: true}\n"
    bake = parse_config(text).bake
    assert (bake.lora.r, bake.lora.lora_alpha, bake.model.peft_config) == (4, 8.0, {"use_rslora": True})


def test_peft_config_keys_are_checked_against_peft():
    assert error_of(GOOD + "  model:\n    peft_config: {use_rsloar: true}\n") == (
        "input.yml:14: BAKE.model.peft_config.use_rsloar: not an option of PEFT's LoraConfig "
        "(did you mean 'use_rslora'?)")
    assert error_of(GOOD + "  model:\n    peft_config: {r: 0}\n") == (
        "input.yml:14: BAKE.model.peft_config.r: must be in [1, 1024], got 0")
    # initialisations that rewrite the base model's weights would commit an adapter for another base
    for init in ("pissa", "pissa_niter_4", "olora", "corda", "loftq", "eva"):
        assert error_of(GOOD + f"  model:\n    peft_config: {{init_lora_weights: {init}}}\n").startswith(
            f"input.yml:14: BAKE.model.peft_config.init_lora_weights: '{init}' rewrites the base model's weights")
    for init in ("true", "gaussian", "orthogonal"):
        parse_config(GOOD + f"  model:\n    peft_config: {{init_lora_weights: {init}}}\n")


def test_train_eval_split_as_a_pair():
    for written, fraction in (("[1, 0]", 1.0), ("[3, 1]", 0.75), ("0.5", 0.5)):
        assert parse_config(GOOD + f"  data: {{train_eval_split: {written}}}\n").bake.data.train_eval_split == fraction
    assert error_of(GOOD + "  data: {train_eval_split: [0, 1]}\n") == (
        "input.yml:13: BAKE.data.train_eval_split: expected train > 0 and eval >= 0, got [0, 1]")


def test_bake_model_dtype_is_model_dtype():
    bake_only = parse_config(GOOD + "  model: {dtype: bf16}\n")
    assert (bake_only.model.dtype, bake_only.bake.model.dtype) == ("bfloat16", "bfloat16")
    assert error_of("MODEL: {dtype: float32}\n" + GOOD + "  model: {dtype: bfloat16}\n") == (
        "input.yml:14: BAKE.model.dtype: bfloat16 differs from MODEL.dtype float32 (one model rolls out and trains)")


def test_every_transformers_scheduler_name_is_known_to_transformers():
    from transformers import SchedulerType

    known = {kind.value for kind in SchedulerType}
    assert {("linear" if name == "huggingface" else name) for name in HF_SCHEDULERS} <= known


def test_every_setting_has_help_and_numbers_have_ranges():
    from bgit.config import schema
    from bgit.config.declare import Settings

    classes = [c for c in vars(schema).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c) and issubclass(c, Settings)]
    for cls in classes:
        for decl in declared_fields(cls):
            assert decl.spec.help, (cls.__name__, decl.name)
            if decl.info.kind in ("int", "float") and decl.spec.key != "":
                assert decl.spec.range is not None or decl.spec.choices is not None, (cls.__name__, decl.name)


# -- validate rejects exactly what a bake would ----------------------------------------------------


def test_validate_refuses_stage_4_on_its_line_and_accepts_zero_3(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for stage, code in ((4, 1), (3, 0)):
        Path("input.yml").write_text(GOOD + f"  deepspeed:\n    zero_optimization:\n      stage: {stage}\n")
        result = CliRunner().invoke(cli, ["validate"])
        assert result.exit_code == code, result.output
        if code:
            assert result.stderr == ("Error: input.yml:15: BAKE.deepspeed.zero_optimization.stage: must be in "
                                     "[0, 3], got 4\n")


def test_the_trainer_keeps_no_settings_of_its_own():
    """train_adapter takes the BakeConfig itself: no second list of defaults or ranges to drift."""
    import inspect

    import bgit.train
    from bgit.train import train_adapter

    assert not hasattr(bgit.train, "TrainSettings")
    assert inspect.signature(train_adapter).parameters["bake"].annotation == "BakeConfig"
    assert not list((Path(bgit.train.__file__).parent).glob("settings.py"))
