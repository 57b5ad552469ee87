"""Documentation that cannot drift: README's CLI reference, help texts, shipped copies."""

import filecmp
from pathlib import Path

from bgit.cli.reference import BEGIN, END, help_text, iter_commands, render

ROOT = Path(__file__).resolve().parent.parent


def test_readme_cli_reference_is_current():
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == render(), "run: python -m bgit.cli.reference and paste into README.md"


def test_every_command_has_a_summary_and_an_example():
    for path, command in iter_commands():
        assert command.get_short_help_str().strip(), f"{path} has no summary"
        if command.callback is not None:
            assert "Example:" in help_text(path, command), f"{path} --help has no example"


def test_packaged_sample_hooks_equal_the_top_level_ones():
    for name in ("pre-bake", "post-bake", "pre-push"):
        assert filecmp.cmp(ROOT / "hooks" / name, ROOT / "bgit" / "_hooks" / name, shallow=False), name
