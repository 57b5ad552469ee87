"""input.yml loading: defaults, resolution, and one exact FILE:LINE: KEY error per bad input."""

from __future__ import annotations

import textwrap

import pytest

from bgit.config import ConfigError, load_config, parse_config, resolve_path
from bgit.errors import BgitError

GOOD = """\
PROMPT:
  teacher:
    messages:
      - role: system
        content: You are Yoda.
  student:
    messages: []
TARGET:
  name: yoda
  generators:
    - type: hardcoded
      stims: ["Hello?", "How are you?"]
BAKE:
  epochs: 3
"""


def parse(text: str, filename: str = "input.yml"):
    return parse_config(textwrap.dedent(text), filename)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def with_bake(extra: str) -> str:
    """GOOD with ``extra`` lines appended inside BAKE (first extra line is line 15)."""
    return GOOD + textwrap.indent(textwrap.dedent(extra), "  ")


# -- good input ---------------------------------------------------------------


def test_minimal_config_gets_schema_defaults_and_resolved_values():
    cfg = parse(GOOD)
    assert cfg.model.base == "smollm2-135m"
    assert cfg.prompt.teacher_messages == [{"role": "system", "content": "You are Yoda."}]
    assert cfg.prompt.student_messages == []
    (target,) = cfg.targets
    assert (target.name, target.max_tokens, target.top_k, target.prompt) == ("yoda", 32, 20, None)
    assert target.generators[0].stims == ["Hello?", "How are you?"]
    assert target.generators[0].numq == 2
    assert cfg.bake.epochs == 3
    assert cfg.bake.lora.r == 16 and cfg.bake.lora.lora_alpha == 32.0
    assert [(d.target, d.weight) for d in cfg.bake.datasets] == [("yoda", 1.0)]
    assert cfg.bake.scheduler.type == "cosine" and cfg.bake.deepspeed.enabled is False
    assert cfg.source == "input.yml"


def test_lora_alpha_defaults_to_twice_the_rank_and_explicit_alpha_is_kept():
    cfg = parse(with_bake("  model:\n    baked_adapter_config: {r: 8}\n"))
    assert cfg.bake.lora.lora_alpha == 16.0
    cfg = parse(with_bake("  model:\n    baked_adapter_config: {r: 8, lora_alpha: 4}\n"))
    assert cfg.bake.lora.lora_alpha == 4.0


def test_bake_sections_map_onto_the_schema():
    cfg = parse(with_bake("""\
      optimizer: {learning_rate: 1e-4, weight_decay: 0.01, betas: [0.8, 0.95]}
      scheduler: {type: linear, warmup_ratio: 0.1, min_lr_ratio: 0.2}
      deepspeed: {zero_optimization: {stage: 2}}
      data: {max_length: 64, train_eval_split: 1}
      loss: full
      parent: head
      total_trajectories: 10
    """))
    bake = cfg.bake
    assert (bake.optimizer.learning_rate, bake.optimizer.weight_decay, bake.optimizer.betas) == (1e-4, 0.01, [0.8, 0.95])
    assert (bake.scheduler.type, bake.scheduler.warmup_ratio, bake.scheduler.min_lr_ratio) == ("linear", 0.1, 0.2)
    assert (bake.deepspeed.enabled, bake.deepspeed.zero_stage) == (True, 2)
    assert (bake.data.max_length, bake.data.train_eval_split) == (64, 1.0)
    assert (bake.loss, bake.parent, bake.total_trajectories) == ("full", "head", 10)


def test_scheduler_as_a_plain_name_keeps_default_warmup():
    cfg = parse(with_bake("  scheduler: constant\n"))
    assert (cfg.bake.scheduler.type, cfg.bake.scheduler.warmup_ratio) == ("constant", 0.05)


def test_empty_deepspeed_mapping_enables_deepspeed_at_stage_zero():
    cfg = parse(with_bake("  deepspeed: {}\n"))
    assert (cfg.bake.deepspeed.enabled, cfg.bake.deepspeed.zero_stage) == (True, 0)


def test_targets_list_with_prompt_override_inherits_missing_parts():
    cfg = parse("""\
        PROMPT:
          teacher: {messages: [{role: system, content: Be a pirate.}]}
          student: {messages: [{role: system, content: Pirate mode.}]}
        TARGETS:
          - name: pirate
            generators: [{type: hardcoded, stims: [hi]}]
          - name: keep
            prompt:
              teacher: {messages: [{role: system, content: Be helpful.}]}
            generators:
              - type: oneshot_qs
                numq: 5
                template: "Write ${numq} questions for: ${prompt_u}"
        BAKE:
          seed: 7
          datasets: [{target: pirate, weight: 0.7}, {target: keep, weight: 0.3}]
        """)
    pirate, keep = cfg.targets
    assert cfg.prompt_for(pirate).teacher_messages[0]["content"] == "Be a pirate."
    assert cfg.prompt_for(keep).teacher_messages[0]["content"] == "Be helpful."
    assert cfg.prompt_for(keep).student_messages[0]["content"] == "Pirate mode."
    generator = keep.generators[0]
    assert (generator.seed, generator.model, generator.numq) == (7, "smollm2-135m", 5)
    assert [(d.target, d.weight) for d in cfg.bake.datasets] == [("pirate", 0.7), ("keep", 0.3)]


def test_tools_and_tool_messages_pass_through():
    cfg = parse("""\
        PROMPT:
          teacher:
            messages:
              - {role: system, content: Use tools.}
              - {role: assistant, tool_calls: [{id: c1, type: function, function: {name: f, arguments: "{}"}}]}
              - {role: tool, tool_call_id: c1, content: "42"}
            tools:
              - {type: function, function: {name: f, parameters: {type: object, properties: {}}}}
        TARGET:
          generators: [{type: hardcoded, stims: [q]}]
        """)
    assert cfg.prompt.teacher_tools[0]["function"]["name"] == "f"
    assert cfg.prompt.teacher_messages[1]["tool_calls"][0]["id"] == "c1"
    assert cfg.prompt.teacher_messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "42"}


def test_questions_is_accepted_for_hardcoded_stims():
    cfg = parse(GOOD.replace("stims:", "questions:"))
    assert cfg.targets[0].generators[0].stims == ["Hello?", "How are you?"]


def test_yaml_anchors_and_merge_keys_work():
    cfg = parse("""\
        PROMPT:
          teacher: {messages: [{role: system, content: x}]}
        TARGETS:
          - &first
            name: a
            max_tokens: 32
            generators: [{type: hardcoded, stims: [q]}]
          - <<: *first
            name: b
        """)
    assert [(t.name, t.max_tokens) for t in cfg.targets] == [("a", 32), ("b", 32)]


def test_from_dataset_path_stays_as_written_and_resolves_next_to_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "q.jsonl").write_text('{"q": "hi"}\n')
    config_path = tmp_path / "input.yml"
    config_path.write_text(GOOD.replace(
        "- type: hardcoded\n      stims: [\"Hello?\", \"How are you?\"]",
        "- type: from_dataset\n      path: data/q.jsonl\n      field: q\n      numq: 0"))
    cfg = load_config(config_path)
    generator = cfg.targets[0].generators[0]
    assert (generator.path, generator.field, generator.numq, generator.seed) == ("data/q.jsonl", "q", 0, 0)
    assert resolve_path(cfg, generator.path) == tmp_path.resolve() / "data" / "q.jsonl"
    with pytest.raises(ConfigError) as info:
        resolve_path(cfg, "/abs/file.jsonl")
    assert str(info.value) == (f"{config_path}: path: '/abs/file.jsonl' is an absolute path; write it relative "
                               "to the config file, inside the repository")


# -- bad input: exact messages and lines ------------------------------------------


def test_config_error_is_a_bgit_error_with_one_line():
    with pytest.raises(BgitError) as info:
        parse(GOOD + "  epochs: 2\n")
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope" / "input.yml")
    assert str(info.value) == f"{tmp_path / 'nope' / 'input.yml'}: file not found"


def test_missing_file_relative_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("input.yml")
    assert str(info.value) == "input.yml: file not found"


def test_malformed_yaml_names_the_line():
    assert error_of("PROMPT:\n  teacher: [a, b\nTARGET: {}\n") == \
        "input.yml:3: yaml: expected ',' or ']', but got ':'"


def test_tab_indentation_is_a_yaml_error():
    message = error_of("PROMPT:\n\tteacher: x\n")
    assert message.startswith("input.yml:2: yaml: ")


def test_unknown_key_with_suggestion():
    assert error_of(with_bake("  epoch: 3\n")) == "input.yml:15: BAKE.epoch: unknown key (did you mean 'epochs'?)"


def test_unknown_section_suggests_case_insensitively():
    assert error_of(GOOD + "bake:\n  epochs: 1\n") == "input.yml:15: bake: unknown key (did you mean 'BAKE'?)"


def test_unknown_key_without_close_match_lists_the_keys():
    assert error_of(GOOD.replace("MODEL", "X").replace("PROMPT:", "PROMPT:\n  zzz: 1", 1)) == (
        "input.yml:2: PROMPT.zzz: unknown key; expected one of: teacher, student")


def test_duplicate_key():
    assert error_of(with_bake("  epochs: 4\n")) == "input.yml:15: BAKE.epochs: duplicate key (first on line 14)"


def test_wrong_type_integer():
    assert error_of(GOOD.replace("epochs: 3", "epochs: abc")) == "input.yml:14: BAKE.epochs: expected an integer, got 'abc'"


def test_wrong_type_float_and_bool_are_not_integers():
    assert error_of(GOOD.replace("epochs: 3", "epochs: 1.5")) == "input.yml:14: BAKE.epochs: expected an integer, got 1.5"
    assert error_of(GOOD.replace("epochs: 3", "epochs: true")) == "input.yml:14: BAKE.epochs: expected an integer, got true"


def test_wrong_type_number_and_mapping():
    assert error_of(with_bake("  optimizer:\n    learning_rate: fast\n")) == (
        "input.yml:16: BAKE.optimizer.learning_rate: expected a number, got 'fast'")
    assert error_of(with_bake("  optimizer: [1]\n")) == "input.yml:15: BAKE.optimizer: expected a mapping, got a list"


def test_negative_epochs():
    assert error_of(GOOD.replace("epochs: 3", "epochs: -1")) == "input.yml:14: BAKE.epochs: must be in [1, 1000], got -1"


def test_split_out_of_range():
    assert error_of(with_bake("  data:\n    train_eval_split: 0\n")) == (
        "input.yml:16: BAKE.data.train_eval_split: must be in (0, 1], got 0")
    assert error_of(with_bake("  data:\n    train_eval_split: 1.5\n")) == (
        "input.yml:16: BAKE.data.train_eval_split: must be in (0, 1], got 1.5")


def test_negative_learning_rate_quotes_the_value_as_written():
    assert error_of(with_bake("  optimizer: {learning_rate: -1e-4}\n")) == (
        "input.yml:15: BAKE.optimizer.learning_rate: must be in (0, 1], got -1e-4")


def test_top_k_below_one():
    text = GOOD.replace("  name: yoda\n", "  name: yoda\n  top_k: 0\n")
    assert error_of(text) == "input.yml:10: TARGET.top_k: must be in [1, 1000], got 0"


def test_unknown_generator_type():
    assert error_of(GOOD.replace("type: hardcoded", "type: hardcode")) == (
        "input.yml:11: TARGET.generators[0].type: expected one of hardcoded, from_dataset, oneshot_qs, persona, "
        "custom, got 'hardcode' (did you mean 'hardcoded'?)")


def test_key_not_used_by_the_generator_type():
    text = GOOD.replace("      stims:", "      template: x\n      stims:")
    assert error_of(text) == ("input.yml:12: TARGET.generators[0].template: not used by hardcoded generators "
                              "(keys: type, stims, numq, max_tokens, rollout_with_conditioned)")


def test_unknown_scheduler_and_loss():
    assert error_of(with_bake("  scheduler: cosin\n")) == (
        "input.yml:15: BAKE.scheduler: expected one of constant, linear, cosine, huggingface, constant_with_warmup, "
        "cosine_with_restarts, cosine_with_min_lr, polynomial, inverse_sqrt, got 'cosin' (did you mean 'cosine'?)")
    assert error_of(with_bake("  scheduler: {type: step}\n")) == (
        "input.yml:15: BAKE.scheduler.type: expected one of constant, linear, cosine, huggingface, "
        "constant_with_warmup, cosine_with_restarts, cosine_with_min_lr, polynomial, inverse_sqrt, got 'step'")
    assert error_of(with_bake("  loss: kl\n")) == "input.yml:15: BAKE.loss: expected one of topk, full, got 'kl'"


def test_off_is_a_choice_not_yaml_false():
    """YAML 1.1 reads a bare `off` as false; where "off" is a choice it means "off"."""
    assert parse(with_bake("  autocast: off\n")).bake.autocast == "off"
    assert error_of(with_bake("  autocast: no\n")) == "input.yml:15: BAKE.autocast: expected a string, got no"


ONESHOT = GOOD.replace("""    - type: hardcoded
      stims: ["Hello?", "How are you?"]
""", """    - type: hardcoded
      stims: ["Hello?"]
    - type: oneshot_qs
      numq: 4
      template: |
        TEMPLATE
""")


def test_oneshot_template_missing_variable():
    assert error_of(ONESHOT.replace("TEMPLATE", "Write ${numq} questions.")) == (
        "input.yml:15: TARGET.generators[1].template: template is missing ${prompt_u}")


def test_oneshot_template_with_unknown_or_invalid_placeholder():
    assert error_of(ONESHOT.replace("TEMPLATE", "${numq} ${prompt_u} ${nmq}")) == (
        "input.yml:15: TARGET.generators[1].template: unknown placeholder ${nmq} (did you mean 'numq'?) "
        "(allowed: ${numq}, ${prompt_u})")
    assert error_of(ONESHOT.replace("TEMPLATE", "${numq} ${prompt_u} costs $5")) == (
        "input.yml:15: TARGET.generators[1].template: invalid '$' placeholder (write $$ for a literal $)")


def test_persona_template_needs_persona_and_no_personas_means_the_built_in_ones():
    text = ONESHOT.replace("type: oneshot_qs", "type: persona\n      personas: [a chef]").replace(
        "TEMPLATE", "${numq} ${prompt_u}")
    assert error_of(text) == "input.yml:16: TARGET.generators[1].template: template is missing ${persona}"
    # The hosted tool's persona generators bring their own personas: bgit's built-in ones, no notice.
    text = ONESHOT.replace("type: oneshot_qs", "type: persona").replace("TEMPLATE", "${numq} ${prompt_u} ${persona}")
    config = parse(text)
    assert config.notices == [] and config.targets[0].generators[1].personas == []


def test_unknown_target_in_datasets():
    assert error_of(with_bake("  datasets:\n    - {target: yod, weight: 1}\n")) == (
        "input.yml:16: BAKE.datasets[0].target: unknown target 'yod' (targets: yoda) (did you mean 'yoda'?)")


def test_duplicate_target_names():
    text = """\
        PROMPT: {teacher: {messages: [{role: system, content: x}]}}
        TARGETS:
          - name: a
            generators: [{type: hardcoded, stims: [q]}]
          - name: a
            generators: [{type: hardcoded, stims: [q]}]
        """
    assert error_of(text) == "input.yml:5: TARGETS[1].name: duplicate target name 'a' (first on line 3)"


def test_no_teacher_messages():
    assert error_of(GOOD.replace("""    messages:
      - role: system
        content: You are Yoda.
  student:""", """    messages: []
  student:""")) == "input.yml:3: PROMPT.teacher.messages: at least one teacher message is required (the prompt to bake in)"


def test_missing_prompt_section():
    assert error_of(GOOD.split("TARGET:")[1].join(["TARGET:", ""])) == (
        "input.yml:1: PROMPT: missing section (the teacher prompt to bake in)")


def test_bad_message_role():
    assert error_of(GOOD.replace("role: system", "role: sytem")) == (
        "input.yml:4: PROMPT.teacher.messages[0].role: expected one of system, user, assistant, tool, "
        "got 'sytem' (did you mean 'system'?)")


def test_target_without_generators():
    assert error_of(GOOD.replace("""  generators:
    - type: hardcoded
      stims: ["Hello?", "How are you?"]
""", "")) == "input.yml:8: TARGET.generators: missing (at least one generator is required)"
    assert error_of(GOOD.replace("""  generators:
    - type: hardcoded
      stims: ["Hello?", "How are you?"]
""", "  generators: []\n")) == "input.yml:10: TARGET.generators: at least one generator is required"


def test_target_and_targets_together():
    text = GOOD + "TARGETS: []\n"
    assert error_of(text) == "input.yml:15: TARGETS: use either TARGET or TARGETS, not both (TARGET is on line 8)"


def test_missing_dataset_file_is_reported_when_loading_from_disk(tmp_path):
    config_path = tmp_path / "input.yml"
    config_path.write_text(GOOD.replace(
        "- type: hardcoded\n      stims: [\"Hello?\", \"How are you?\"]", "- type: from_dataset\n      path: missing.jsonl"))
    with pytest.raises(ConfigError) as info:
        load_config(config_path)
    assert str(info.value) == f"{config_path}:12: TARGET.generators[0].path: file not found: missing.jsonl"


def test_empty_file_and_non_mapping():
    assert error_of("") == "input.yml:1: the file is empty; expected the sections PROMPT, TARGET and BAKE"
    assert error_of("- a\n- b\n") == "input.yml:1: expected a mapping of sections (MODEL, PROMPT, TARGET, BAKE)"


def test_all_issues_are_collected_in_line_order():
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace("epochs: 3", "epochs: 0\n  loss: kl").replace("top_k", "x").replace(
            "name: yoda", "name: yoda\n  top_k: -1"))
    lines = [str(issue) for issue in info.value.issues]
    assert lines == [
        "input.yml:10: TARGET.top_k: must be in [1, 1000], got -1",
        "input.yml:15: BAKE.epochs: must be in [1, 1000], got 0",
        "input.yml:16: BAKE.loss: expected one of topk, full, got 'kl'",
    ]
    assert str(info.value) == lines[0]


def test_invalid_role_does_not_also_report_missing_teacher():
    with pytest.raises(ConfigError) as info:
        parse(GOOD.replace("role: system", "role: nobody"))
    assert len(info.value.issues) == 1


def test_target_name_must_be_safe_for_paths():
    assert error_of(GOOD.replace("name: yoda", "name: ../evil")) == (
        "input.yml:9: TARGET.name: invalid target name '../evil' (use letters, digits, '.', '_' and '-')")
