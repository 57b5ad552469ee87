"""section_hash / config_to_dict: same meaning -> same hash, any change -> new hash."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from bgit.config import canonical_json, config_to_dict, parse_config, section_hash
from bgit.config.schema import LoraConfig

BASE = """\
# a comment
PROMPT:
  teacher:
    messages:
      - role: system
        content: You are Yoda.
TARGET:
  name: yoda
  generators:
    - type: hardcoded
      stims: [a, b]
BAKE:
  epochs: 2
  optimizer:
    learning_rate: 0.0001
    weight_decay: 0
"""

# Same meaning: keys reordered, flow style, other comments, 1e-4 for 0.0001, 0.0 for 0,
# defaults written out, TARGETS with one item instead of TARGET.
SAME = """\
BAKE:
  optimizer: {weight_decay: 0.0, learning_rate: 1e-4}   # tuned later
  epochs: 2
  model:
    baked_adapter_config: {r: 16, lora_alpha: 32}
TARGETS:
  - generators: [{stims: [a, b], type: hardcoded}]
    name: yoda
PROMPT:
  teacher: {messages: [{content: You are Yoda., role: system}]}
MODEL: {base: smollm2-135m}
"""


def test_equal_configs_written_differently_hash_the_same():
    first, second = parse_config(BASE, "a.yml"), parse_config(SAME, "other/b.yml")
    assert section_hash(first) == section_hash(second)
    assert section_hash(first.bake) == section_hash(second.bake)
    assert config_to_dict(first) == config_to_dict(second)


@pytest.mark.parametrize("old, new", [
    ("content: You are Yoda.", "content: You are Yoda!"),
    ("stims: [a, b]", "stims: [b, a]"),
    ("learning_rate: 0.0001", "learning_rate: 0.0002"),
    ("epochs: 2", "epochs: 3"),
    ("name: yoda", "name: yoda2"),
])
def test_any_value_change_changes_the_hash(old, new):
    assert old in BASE
    assert section_hash(parse_config(BASE)) != section_hash(parse_config(BASE.replace(old, new)))


def test_teacher_prompt_change_changes_only_the_prompt_hash():
    first = parse_config(BASE)
    second = parse_config(BASE.replace("You are Yoda.", "You are Yoda, the Jedi."))
    assert section_hash(first.prompt) != section_hash(second.prompt)
    assert section_hash(first.bake) == section_hash(second.bake)


def test_source_file_is_not_part_of_the_hash_or_dict():
    cfg = parse_config(BASE, "x/input.yml")
    assert "source" not in config_to_dict(cfg)
    assert section_hash(cfg) == section_hash(parse_config(BASE, "y.yml"))


def test_canonical_json_is_sorted_compact_and_stable_for_floats():
    assert canonical_json({"b": [1, 0.1], "a": {"y": 1e-4, "x": None}}) == '{"a":{"x":null,"y":0.0001},"b":[1,0.1]}'
    assert section_hash({"a": 1, "b": 2}) == section_hash({"b": 2, "a": 1})
    assert len(section_hash([])) == 64


def test_dataclasses_hash_like_their_dicts():
    lora = LoraConfig(r=4, lora_alpha=8.0)
    assert section_hash(lora) == section_hash(json.loads(canonical_json(lora)))
    assert section_hash(lora) != section_hash(LoraConfig(r=4, lora_alpha=8.5))


def test_unhashable_values_are_refused():
    @dataclass
    class Odd:
        value: object = field(default_factory=object)

    with pytest.raises(TypeError):
        section_hash(Odd())
    with pytest.raises(ValueError):
        section_hash({"x": float("nan")})
    with pytest.raises(TypeError):
        section_hash({1: "x"})
