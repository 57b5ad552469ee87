"""Entry point of the ``bgit`` command."""

from __future__ import annotations

import importlib
import sys
import warnings

import click

from bgit import __version__
from bgit.errors import BgitError

# Modules whose COMMANDS list is registered on the top-level group.
COMMAND_MODULES = [
    "bgit.cli.repo_cmds",
    "bgit.cli.config_cmds",
    "bgit.cli.pipeline_cmds",
    "bgit.cli.remote_cmds",
    "bgit.cli.use_cmds",
    "bgit.cli.merge_cmds",
]


class BgitGroup(click.Group):
    """Turns library errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BgitError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@click.group(cls=BgitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bgit")
def cli() -> None:
    """git for baked models: bake prompts into LoRA weights and version every bake.

    Example: bgit init demo && cd demo && bgit bake -m "first bake"
    """


for _module_name in COMMAND_MODULES:
    for _command in importlib.import_module(_module_name).COMMANDS:
        cli.add_command(_command)


def main() -> None:
    # Deprecation chatter between library versions (peft calling transformers) is for their
    # developers, not for someone baking a model.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    cli(prog_name="bgit")


if __name__ == "__main__":
    sys.exit(main())
