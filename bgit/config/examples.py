"""The example input files shipped with the package (``bgit/config/examples/``).

The top-level ``examples/`` directory of the repository is a copy kept identical by
a test; the package copy is the one an installed bgit reads.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bgit.config.errors import ConfigError, ConfigIssue

_PACKAGE = "bgit.config"


def _examples_dir():
    return resources.files(_PACKAGE).joinpath("examples")


def example_names() -> list[str]:
    """Names of the shipped examples, e.g. ['customer_service', 'french', 'two_targets', 'yoda']."""
    return sorted(item.name[: -len(".yml")] for item in _examples_dir().iterdir() if item.name.endswith(".yml"))


def example_text(name: str) -> str:
    """The text of example ``name`` (with or without ``.yml``)."""
    name = name[: -len(".yml")] if name.endswith(".yml") else name
    if name not in example_names():
        raise ConfigError([ConfigIssue(f"{name}.yml", None, None,
                                       f"no such example (examples: {', '.join(example_names())})")])
    return _examples_dir().joinpath(f"{name}.yml").read_text(encoding="utf-8")


def example_files(name: str) -> dict[str, bytes]:
    """Every file example ``name`` needs, relative to the directory of its input.yml:
    ``{"input.yml": ..., "data/questions.jsonl": ...}`` (its dataset files included)."""
    from bgit.config.load import parse_config

    text = example_text(name)
    files = {"input.yml": text.encode("utf-8")}
    config = parse_config(text, f"{name}.yml")
    for target in config.targets:
        for generator in target.generators:
            if generator.type == "from_dataset" and generator.path:
                files[Path(generator.path).as_posix()] = _examples_dir().joinpath(generator.path).read_bytes()
    return files


def write_example(name: str, directory: str | Path) -> Path:
    """Write example ``name`` as ``directory/input.yml`` (plus its data files); returns the yml path."""
    directory = Path(directory)
    for relative, data in example_files(name).items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return directory / "input.yml"
