"""bgit serve: the bakes over an OpenAI-compatible HTTP API, with a web page."""

from __future__ import annotations

import json
import sys

import click

from bgit import api


@click.command()
@click.argument("refs", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs an API key.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="TCP port (0: any free one).")
@click.option("--api-key", envvar="BGIT_API_KEY", show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every request.")
@click.option("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available).")
@click.option("--max-batch", default=16, show_default=True, type=click.IntRange(1, 1024),
              help="Requests generated together at most.")
@click.option("--json", "as_json", is_flag=True, help="Print where it listens as one JSON line once ready.")
def serve(refs, host, port, api_key, device, max_batch, as_json):
    """Serve bakes over an OpenAI-compatible API, with a web page to compare them.

    Each REF (branch, tag, commit; default: every branch and tag) is a model named by
    the ref; `base` is the base model. A branch follows new bakes without a restart.
    The page at / lists the bakes and compares each with the prompted base model.

    Example: bgit serve main v1 --port 8000
    """
    def ready(info) -> None:
        if as_json:
            click.echo(json.dumps({"url": info.url, "models": list(info.models), "base_model": info.base_model,
                                   "notes": list(info.notes)}), nl=True)
            sys.stdout.flush()
            return
        for note in info.notes:
            click.echo(f"note: {note}", err=True)
        click.echo(f"serving {', '.join(info.models)} (base model {info.base_model}) at {info.url}/v1")
        click.echo(f"web page: {info.url}/   (Ctrl-C to stop)")

    api.serve(".", refs, host=host, port=port, api_key=api_key, on_ready=ready, device=device, max_batch=max_batch)


COMMANDS = [serve]
