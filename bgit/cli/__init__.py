"""The command line: click commands only. Each module owns one group of commands
and exposes them in ``COMMANDS``; :mod:`bgit.cli.main` registers them all."""
