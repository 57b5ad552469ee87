"""Hooks: executables in ``.git/hooks/<name>`` that bgit runs around bakes and pushes.

Contract (also in ``hooks/README.md``):

- A hook runs when ``.git/hooks/<name>`` exists and is executable, with the work tree root
  as its working directory and the caller's environment plus:

  ==================  =====================================================================
  BGIT_HOOK           the hook's name (``pre-bake``, ``post-bake``, ``pre-push``)
  BGIT_REPO           the work tree root
  BGIT_CONFIG         the path of input.yml
  ==================  =====================================================================

  ``post-bake`` (after training and eval, before the commit) also gets ``BGIT_BAKE_DIR``
  (a staging directory holding bake.yml, eval.json and adapter/), ``BGIT_EVAL_CLOSURE`` and
  ``BGIT_FINAL_EVAL_KL`` (empty when unknown). ``pre-push`` gets ``BGIT_REMOTE``,
  ``BGIT_REMOTE_URL`` and, on stdin, one line per ref like git's:
  ``<local ref> <local sha> <remote ref> <remote sha>`` (40 zeros for a missing ref).
- Exit 0 lets the operation go on; any other exit aborts it with
  ``HookError("<name> hook failed (exit N): <last line of its stderr>")``.
- The hook's stdout and stderr are shown to the user (on stderr, as git does).

``bgit init`` installs the samples shipped with bgit disabled, as ``<name>.disabled``;
``bgit hooks enable NAME`` renames one to ``<name>`` and makes it executable.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bgit.repo.errors import RepoError

BGIT_HOOKS = ("pre-bake", "post-bake", "pre-push")
DISABLED_SUFFIX = ".disabled"


class HookError(RepoError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class HookFailedError(HookError):
    def __init__(self, name: str, exit_code: int, last_line: str) -> None:
        detail = f": {last_line}" if last_line else ""
        super().__init__(name, f"{name} hook failed (exit {exit_code}){detail}")
        self.exit_code_of_hook, self.last_line = exit_code, last_line


@dataclass(frozen=True)
class HookInfo:
    name: str
    enabled: bool
    path: Path | None  # the file (enabled or disabled copy); None when neither exists


def hooks_dir(repo) -> Path:
    return Path(repo.git.path) / "hooks"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def run_hook(repo, name: str, env: dict | None = None, stdin: str | None = None) -> bool:
    """Run hook ``name`` if enabled; -> whether it ran. Raises HookError on a non-zero exit."""
    path = hooks_dir(repo) / name
    if not _is_executable(path):
        return False
    full_env = dict(os.environ)
    full_env.update({"BGIT_HOOK": name, "BGIT_REPO": str(repo.root), "BGIT_CONFIG": str(repo.root / "input.yml")})
    full_env.update({key: "" if value is None else str(value) for key, value in (env or {}).items()})
    try:
        done = subprocess.run([str(path)], cwd=str(repo.root), env=full_env, input=stdin if stdin is not None else "",
                              capture_output=True, text=True)
    except OSError as error:
        raise HookError(name, f"{name} hook could not run: {error.strerror or error}") from None
    for stream in (done.stdout, done.stderr):
        if stream:
            sys.stderr.write(stream if stream.endswith("\n") else stream + "\n")
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise HookFailedError(name, done.returncode, lines[-1] if lines else "")
    return True


def sample_hooks_dir() -> Path | None:
    """Where the sample hooks shipped with bgit live (package data, or the source checkout)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_hooks", package.parent / "hooks"):
        if all((candidate / name).is_file() for name in BGIT_HOOKS):
            return candidate
    return None


def install_sample_hooks(repo) -> list[str]:
    """Copy the samples into .git/hooks as ``<name>.disabled`` (never over an existing hook)."""
    source = sample_hooks_dir()
    if source is None:
        return []
    target = hooks_dir(repo)
    target.mkdir(parents=True, exist_ok=True)
    installed = []
    for name in BGIT_HOOKS:
        if (target / name).exists() or (target / (name + DISABLED_SUFFIX)).exists():
            continue
        shutil.copyfile(source / name, target / (name + DISABLED_SUFFIX))
        installed.append(name)
    return installed


def list_hooks(repo) -> list[HookInfo]:
    """bgit's hooks plus any other executable hook present (git's *.sample files excluded)."""
    directory = hooks_dir(repo)
    names = set(BGIT_HOOKS)
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name.endswith(DISABLED_SUFFIX):
                names.add(path.name[: -len(DISABLED_SUFFIX)])
            elif _is_executable(path) and not path.name.endswith(".sample"):
                names.add(path.name)
    infos = []
    for name in sorted(names):
        enabled = directory / name
        disabled = directory / (name + DISABLED_SUFFIX)
        if _is_executable(enabled):
            infos.append(HookInfo(name, True, enabled))
        elif enabled.exists():
            infos.append(HookInfo(name, False, enabled))
        else:
            infos.append(HookInfo(name, False, disabled if disabled.exists() else None))
    return infos


def enable_hook(repo, name: str) -> Path:
    _check_name(name)
    directory = hooks_dir(repo)
    enabled, disabled = directory / name, directory / (name + DISABLED_SUFFIX)
    if not enabled.exists():
        if not disabled.exists():
            raise HookError(name, f"no hook named {name} in {directory}")
        os.replace(disabled, enabled)
    mode = enabled.stat().st_mode
    enabled.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return enabled


def disable_hook(repo, name: str) -> Path:
    _check_name(name)
    directory = hooks_dir(repo)
    enabled, disabled = directory / name, directory / (name + DISABLED_SUFFIX)
    if not enabled.exists():
        if disabled.exists():
            return disabled
        raise HookError(name, f"no hook named {name} in {directory}")
    if disabled.exists():
        disabled.unlink()
    os.replace(enabled, disabled)
    return disabled


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise HookError(name, f"invalid hook name {name!r}")
