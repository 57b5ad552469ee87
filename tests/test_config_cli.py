"""Shipped examples, the generated reference doc, and `bgit validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.config import example_files, example_names, example_text, load_config, write_example
from bgit.config.reference import documented_fields, reference_markdown
from bgit.config import schema

ROOT = Path(__file__).resolve().parent.parent
TOP_EXAMPLES = ROOT / "examples"
PACKAGE_EXAMPLES = ROOT / "bgit" / "config" / "examples"


def _tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_top_level_examples_are_identical_to_the_packaged_ones():
    # The package copy is what an installed bgit reads; fix a failure with
    #   cp -r bgit/config/examples/. examples/
    assert _tree(TOP_EXAMPLES) == _tree(PACKAGE_EXAMPLES)


def test_example_names():
    assert example_names() == ["customer_service", "french", "pirate", "two_targets", "yoda"]


@pytest.mark.parametrize("name", ["customer_service", "french", "pirate", "two_targets", "yoda"])
def test_every_example_validates_from_the_repository_and_the_package(name):
    cfg = load_config(TOP_EXAMPLES / f"{name}.yml")
    assert cfg.targets and all((target.prompt or cfg.prompt).teacher_messages for target in cfg.targets)
    assert example_text(name) == (TOP_EXAMPLES / f"{name}.yml").read_text()


def test_yoda_example_is_cpu_sized_and_has_an_empty_student_prompt():
    cfg = load_config(TOP_EXAMPLES / "yoda.yml")
    assert cfg.prompt.student_messages == []
    assert "Yoda" in cfg.prompt.teacher_messages[0]["content"]
    (target,) = cfg.targets
    (generator,) = target.generators
    rows = (TOP_EXAMPLES / generator.path).read_text().splitlines()
    assert generator.type == "from_dataset" and generator.numq == 0 and 100 <= len(rows) <= 200
    assert target.max_tokens <= 64 and target.num_traj_per_stimulus <= 2
    assert 2 <= cfg.bake.epochs <= 3 and cfg.bake.lora.r == 16 and cfg.bake.micro_batch_size == 4


def test_two_targets_example_weights():
    cfg = load_config(TOP_EXAMPLES / "two_targets.yml")
    assert [(d.target, d.weight) for d in cfg.bake.datasets] == [("pirate", 1.0), ("butler", 1.0)]
    assert [t.prompt.student_messages[0]["content"] for t in cfg.targets] == ["Talk like a pirate.", "Talk like a butler."]


def test_write_example_copies_dataset_files_so_it_loads_elsewhere(tmp_path):
    assert set(example_files("french")) == {"input.yml", "data/questions.jsonl"}
    path = write_example("french", tmp_path)
    cfg = load_config(path)
    generator = cfg.targets[0].generators[0]
    rows = (tmp_path / generator.path).read_text().splitlines()
    assert len(rows) >= 10 and all("question" in json.loads(row) for row in rows)


def test_unknown_example_is_a_config_error():
    from bgit.config import ConfigError

    with pytest.raises(ConfigError) as info:
        example_text("klingon")
    assert str(info.value) == "klingon.yml: no such example (examples: customer_service, french, pirate, two_targets, yoda)"


def test_reference_doc_is_up_to_date():
    # Regenerate with: python -m bgit.config.reference > docs/input-yml.md
    assert (ROOT / "docs" / "input-yml.md").read_text() == reference_markdown()


def test_reference_documents_every_schema_field():
    import dataclasses

    from bgit.config.declare import Settings

    fields = {(cls.__name__, f.name) for cls in vars(schema).values()
              if isinstance(cls, type) and dataclasses.is_dataclass(cls) and issubclass(cls, Settings)
              and cls is not schema.InputConfig
              for f in dataclasses.fields(cls)}
    assert fields == documented_fields()


# -- bgit validate ----------------------------------------------------------------


def run(args):
    return CliRunner().invoke(cli, args)


def test_validate_ok_prints_a_summary():
    result = run(["validate", str(TOP_EXAMPLES / "two_targets.yml")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{TOP_EXAMPLES / 'two_targets.yml'}: ok"
    assert "  model:   smollm2-135m" in lines
    assert any(line.startswith("  target:  pirate (1 generator: hardcoded 4 stims") for line in lines)
    assert any(line.startswith("  target:  butler (1 generator: hardcoded 4 stims") for line in lines)
    assert any("2 epochs" in line and "pirate 1, butler 1" in line for line in lines)


def test_validate_defaults_to_input_yml_in_the_current_directory(tmp_path, monkeypatch):
    write_example("yoda", tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "input.yml: ok"


def test_validate_errors_one_line_each_exit_1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_example("yoda", tmp_path)  # with the dataset it reads
    text = example_text("yoda").replace("  epochs: 2", "  epochs: -3\n  epoch: 3").replace("top_k: 20", "top_k: lots")
    Path("input.yml").write_text(text)
    lines = text.splitlines()
    top_k_line = next(i for i, line in enumerate(lines, 1) if "top_k: lots" in line)
    epochs_line = next(i for i, line in enumerate(lines, 1) if "epochs: -3" in line)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: input.yml:{top_k_line}: TARGET.top_k: expected an integer, got 'lots'",
        f"Error: input.yml:{epochs_line}: BAKE.epochs: must be in [1, 1000], got -3",
        f"Error: input.yml:{epochs_line + 1}: BAKE.epoch: unknown key (did you mean 'epochs'?)",
    ]
    assert "Traceback" not in result.output


def test_validate_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert result.stderr == "Error: input.yml: file not found\n"


def test_validate_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_example("yoda", tmp_path)
    ok = CliRunner().invoke(cli, ["validate", "--json"])
    data = json.loads(ok.stdout)
    assert ok.exit_code == 0 and data["ok"] is True
    assert data["config"]["bake"]["lora"]["lora_alpha"] == 32.0
    Path("bad.yml").write_text("PROMPT: [\n")
    bad = CliRunner().invoke(cli, ["validate", "bad.yml", "--json"])
    assert bad.exit_code == 1
    assert json.loads(bad.stdout) == {"file": "bad.yml", "ok": False, "notices": [], "errors": [
        {"file": "bad.yml", "line": 2, "key": "yaml", "message": "expected the node content, but found '<stream end>'"}]}


def test_validate_help_has_an_example():
    result = CliRunner().invoke(cli, ["validate", "--help"])
    assert result.exit_code == 0
    assert "Example: bgit validate" in result.stdout
