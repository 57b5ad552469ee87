"""Repository commands: init, add, commit, status, log, show, branch, checkout, tag, fsck, gc."""

COMMANDS = []
