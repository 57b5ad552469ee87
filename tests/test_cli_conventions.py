"""Conventions every command keeps: --json wherever data is printed, one meaning per short flag."""

from __future__ import annotations

import json

import click
from click.testing import CliRunner

from bgit import api
from bgit.cli.main import cli
from bgit.cli.reference import HELP_OPTION_NAMES, iter_commands

# Commands without --json, and why.
NO_JSON = {
    "bgit chat": "an interactive conversation: there is no data to print",
    "bgit hooks": "a group: its subcommands print (and take --json)",
}


def options(path: str, command: click.Command) -> list[click.Option]:
    context = click.Context(command, info_name=path, help_option_names=HELP_OPTION_NAMES)
    return [p for p in command.get_params(context) if isinstance(p, click.Option)]


def test_every_command_that_prints_data_takes_json():
    missing = [path for path, command in iter_commands()
               if path not in NO_JSON and not any("--json" in o.opts for o in options(path, command))]
    assert missing == []
    assert set(NO_JSON) <= {path for path, _ in iter_commands()}   # no stale exemptions


def test_one_meaning_per_short_flag():
    meanings: dict[str, set[str]] = {}
    for path, command in iter_commands():
        for option in options(path, command):
            names = option.opts + option.secondary_opts
            long = [n for n in names if n.startswith("--")]
            for short in (n for n in names if not n.startswith("--")):
                meanings.setdefault(short, set()).add(long[0] if long else f"({option.name})")
    assert {short: names for short, names in meanings.items() if len(names) > 1} == {}
    assert meanings["-n"] == {"--max-count"} and meanings["-h"] == {"--help"} and meanings["-m"] == {"--message"}
    assert meanings["-c"] == {"--config"} and meanings["-f"] == {"--force"}


def run(*args: str) -> click.testing.Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_the_new_commands_print_json(tmp_path, monkeypatch):
    root = api.init(tmp_path / "r", example=None).root
    monkeypatch.chdir(root)
    assert run("log", "--json").output == "[]\n"   # an empty repository has an empty history
    for n in (1, 2):
        (root / "notes.txt").write_text(f"version {n}\n")
        run("add", "notes.txt")
        run("commit", "-m", f"v{n}")
    reverted = json.loads(run("revert", "HEAD", "--json").output)
    assert reverted["summary"] == 'Revert "v2"' and reverted["branch"] == "main"
    run("branch", "keep")
    reset = json.loads(run("reset", "--hard", "HEAD~2", "--json").output)
    assert reset["mode"] == "hard" and reset["new"] == api.log(root)[0].entry.id
    removed = json.loads(run("rm", "--cached", "notes.txt", "--json").output)
    assert removed == {"removed": ["notes.txt"], "cached": True}
    assert json.loads(run("hooks", "enable", "post-bake", "--json").output)["enabled"] is True
    assert json.loads(run("hooks", "disable", "post-bake", "--json").output)["enabled"] is False
    assert len(json.loads(run("log", "--json").output)) == 1
    assert len(json.loads(run("log", "--all", "--json").output)) == 3    # branch keep's history too
