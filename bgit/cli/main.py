"""Entry point of the ``bgit`` command."""

from __future__ import annotations

import importlib
import os
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
    "bgit.cli.models_cmds",
    "bgit.cli.serve_cmds",
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
        except BrokenPipeError:
            # `bgit log | head`: the reader left. Like git, stop quietly; point stdout at
            # /dev/null so the interpreter's final flush does not complain either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)
        except OSError as error:
            # Last resort: the layers name the operation and path where they know them
            # (OsOperationError); anything that still gets here is named by the command.
            click.echo(f"Error: {os_error_line(ctx.invoked_subcommand or 'bgit', error)}", err=True)
            ctx.exit(1)


def os_error_line(command: str, error: OSError) -> str:
    """``bgit clone: /x/y: Not a directory`` -- one line, whatever the OSError carries."""
    detail = error.strerror or (os.strerror(error.errno) if error.errno else "")
    detail = detail or (str(error) or type(error).__name__).splitlines()[0]
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    where = f"{' -> '.join(paths)}: " if paths else ""
    return f"bgit {command}: {where}{detail}"


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
