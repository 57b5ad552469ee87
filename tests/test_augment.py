"""TARGET.augment: a short stim list topped up with bgit's bundled everyday user messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bgit.config import ConfigError, parse_config
from bgit.pipeline.augment import (augment_stims, bundled_messages, messages_digest, near_duplicate,
                                   words)
from bgit.record import stim_id

ROOT = Path(__file__).resolve().parent.parent


def rows(*texts):
    return [{"id": stim_id(t), "text": t, "generator": "hardcoded"} for t in texts]


def test_bundled_messages_are_many_unique_and_clean():
    messages = bundled_messages()
    assert len(messages) >= 250
    assert len({" ".join(m.casefold().split()) for m in messages}) == len(messages)
    assert all(m == m.strip() and not m.startswith("#") and len(m) <= 300 for m in messages)


def test_a_short_list_is_topped_up_after_the_users_own_stims():
    mine = rows("How do I tie a bowline?", "Why is the sea salty?")
    out = augment_stims(mine, 20, seed=0)
    assert len(out) == 20
    assert out[:2] == mine
    added = out[2:]
    assert {r["generator"] for r in added} == {"augment"}
    assert all(r["text"] in bundled_messages() and r["id"] == stim_id(r["text"]) for r in added)
    assert len({r["id"] for r in out}) == 20


def test_sampling_follows_the_seed():
    mine = rows("How do I tie a bowline?")
    assert augment_stims(mine, 30, seed=3) == augment_stims(mine, 30, seed=3)
    assert augment_stims(mine, 30, seed=3) != augment_stims(mine, 30, seed=4)


def test_off_or_enough_stims_changes_nothing():
    mine = rows("a question?", "another one?", "a third?")
    assert augment_stims(mine, 0, seed=0) is mine
    assert augment_stims(mine, 3, seed=0) is mine
    assert augment_stims(mine, 2, seed=0) is mine


def test_messages_that_nearly_repeat_a_stim_are_skipped():
    everything = list(bundled_messages())
    # the user's list already holds every bundled message but one, reworded by a word
    mine = rows(*(m + " thanks" if len(words(m)) >= 6 else m for m in everything[1:]))
    out = augment_stims(mine, len(mine) + 5, seed=0)
    assert [r["text"] for r in out[len(mine):]] == [everything[0]]


def test_near_duplicate_is_word_set_similarity():
    assert near_duplicate(words("How do I cook rice so it isn't sticky?"),
                          words("how do I cook rice so it isn't sticky"))
    assert not near_duplicate(words("How do I cook rice?"), words("How do I cook pasta?"))


def config_text(augment=None) -> str:
    target = {"name": "t", "generators": [{"type": "hardcoded", "stims": ["Why?"]}]}
    if augment is not None:
        target["augment"] = augment
    return yaml.safe_dump({"PROMPT": {"teacher": {"messages": [{"role": "system", "content": "Be a pirate."}]}},
                           "TARGET": target}, sort_keys=False)


def test_setting_default_shorthand_and_mapping():
    from bgit.config.schema import AUGMENT_STIMS_PER_BAKE

    assert parse_config(config_text(), "in.yml").targets[0].augment.min_stims == AUGMENT_STIMS_PER_BAKE > 0
    assert parse_config(config_text(0), "in.yml").targets[0].augment.min_stims == 0
    assert parse_config(config_text({"min_stims": 40}), "in.yml").targets[0].augment.min_stims == 40


def test_the_default_is_shared_by_a_bakes_targets_and_an_explicit_count_is_per_target():
    from bgit.config.schema import AUGMENT_STIMS_PER_BAKE

    def two_targets(augment=None):
        data = yaml.safe_load(config_text(augment))
        first = data.pop("TARGET")
        second = dict(first, name="other")
        return [t.augment.min_stims for t in parse_config(yaml.safe_dump({**data, "TARGETS": [first, second]}),
                                                          "in.yml").targets]

    assert two_targets() == [AUGMENT_STIMS_PER_BAKE // 2] * 2
    assert two_targets(40) == [40, 40]


def test_a_negative_count_is_refused_at_its_line():
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(-1), "in.yml")
    assert str(caught.value) == "in.yml:12: TARGET.augment: must be in [0, 100000], got -1"


def test_stim_key_changes_with_the_setting_and_not_when_off(tmp_path):
    from bgit.pipeline import keys

    def key(augment):
        config = parse_config(config_text(augment), str(tmp_path / "in.yml"))
        return keys.stim_key(config, config.targets[0], fingerprint=lambda name: "fp",
                             data_path=lambda path: tmp_path / path).key

    assert key(10) != key(20)
    assert key(0) == key({"min_stims": 0})
    assert key(10) == key({"min_stims": 10})
    assert len(messages_digest()) == 64


def test_heldout_benchmark_messages_are_in_no_training_source():
    """bench/quality_bench.py measures closure on messages never trained on: not bundled, and not in
    any stim the shipped examples name."""
    from bgit.config import example_files, example_names, parse_config as parse

    bundled = {words(m) for m in bundled_messages()}
    trained = set()
    for name in example_names():
        files = example_files(name)
        config = parse(files["input.yml"].decode(), f"{name}.yml")
        for target in config.targets:
            for generator in target.generators:
                trained |= {words(s) for s in generator.stims}
        for path, data in files.items():
            if path.endswith(".jsonl"):
                trained |= {words(next(iter(json.loads(line).values())))
                            for line in data.decode().splitlines() if line.strip()}
    for path in sorted((ROOT / "bench" / "data" / "heldout").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            message = words(json.loads(line)["text"])
            assert not any(near_duplicate(message, other) for other in bundled | trained), (path.name, line)


def test_bgit_stim_shows_the_topped_up_rows(tmp_path):
    import subprocess
    import sys

    from evaluate_helpers import make_base_model

    base = make_base_model(tmp_path / "tiny")
    root = tmp_path / "repo"
    subprocess.run([sys.executable, "-m", "bgit", "init", str(root)], check=True, capture_output=True)
    config = yaml.safe_load(config_text(12))
    config["MODEL"] = {"base": str(base)}
    config["TARGET"]["generators"][0]["stims"] = ["How do I tie a bowline?", "Why is the sea salty?"]
    (root / "input.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "bgit", "stim", "--json", "--limit", "0"], cwd=root,
                            capture_output=True, text=True, check=True)
    (report,) = json.loads(result.stdout)
    assert report["count"] == 12
    assert [r["text"] for r in report["rows"][:2]] == ["How do I tie a bowline?", "Why is the sea salty?"]
    assert {r["generator"] for r in report["rows"][2:]} == {"augment"}
