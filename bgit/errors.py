"""The one base error of bgit.

Every layer derives its own errors from :class:`BgitError`; ``str(error)`` is a
single line meant for a user. The CLI prints it as ``Error: <message>`` and exits
with :attr:`BgitError.exit_code`. Anything else that escapes is a bug and keeps its
traceback.
"""


class BgitError(Exception):
    """A failure the user can act on; the message is one line."""

    exit_code = 1
