"""Files a config names (datasets, templates): the one place that decides whether bgit may read them.

A bake commits what it reads, so a config must not be able to make it read (and publish)
anything else (DESIGN §5). A path written in a config:

- is relative (to the config file's directory); absolute and ``~`` paths are refused;
- resolves, symlinks followed to the end, inside the *area*: the repository root, or the
  config file's directory when the config is in no repository;
- never resolves under ``/proc`` or ``/sys``, and is a regular file or a directory (a FIFO,
  socket or device would block or leak); a directory's entries obey the same rules.

The loader checks this when a config is loaded; readers (the stim phase, the bake's dataset
digest and commit) call :func:`resolve_config_file` again right before reading and then read
the path it returns, so a symlink swapped after validation is caught too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bgit.config.errors import ConfigPathError

NEVER_READ = (Path("/proc"), Path("/sys"))


def find_repository_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.git`` (a directory or a worktree file)."""
    start = Path(start).resolve()
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def area_of(config_dir: Path, root: Path | None) -> tuple[Path, str]:
    """(directory files must stay in, its name in messages)."""
    if root is not None:
        return Path(root).resolve(), "the repository"
    return Path(config_dir).resolve(), "the config file's directory"


def check_written(written: str) -> None:
    """Checks that need no file system: refuses absolute and home-relative paths."""
    if not written.strip():
        raise ConfigPathError(written, "must not be empty")
    if written.startswith("~") or Path(written).is_absolute():
        raise ConfigPathError(written, f"{written!r} is an absolute path; write it relative to the config "
                                       "file, inside the repository")


def resolve_config_file(written: str, config_dir: Path, root: Path | None = None) -> Path:
    """The real path of ``written`` (relative to ``config_dir``) if bgit may read it.

    Raises :class:`ConfigPathError` (one line naming ``written``) otherwise; ``root`` is the
    repository root (None: the config is in no repository)."""
    check_written(written)
    area, area_name = area_of(config_dir, root)
    try:
        real = (Path(config_dir) / written).resolve(strict=True)
    except FileNotFoundError:
        raise ConfigPathError(written, f"file not found: {written}") from None
    except (OSError, RuntimeError) as error:  # a symlink loop, a path component that is a file
        raise ConfigPathError(written, f"cannot resolve {written!r} "
                                       f"({getattr(error, 'strerror', None) or error})") from None
    _check_real(written, real, area, area_name)
    if real.is_dir():
        for label, entry in _walk(real, written):
            _check_real(written, entry, area, area_name, inside=label)
    return real


def _check_real(written: str, real: Path, area: Path, area_name: str, inside: str | None = None) -> None:
    what = f"{written!r} contains {inside}, which" if inside else repr(written)
    if any(real == top or real.is_relative_to(top) for top in NEVER_READ):
        raise ConfigPathError(written, f"{what} resolves to {real}: /proc and /sys are never read")
    if not real.is_relative_to(area):
        raise ConfigPathError(written, f"{what} resolves outside {area_name} ({real})")
    mode = os.stat(real).st_mode  # stat never opens: a FIFO cannot block here
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ConfigPathError(written, f"{what} is not a regular file or directory")


def _walk(directory: Path, written: str, label: str = "", seen: set | None = None):
    """(name relative to the named directory, real path) of every entry under ``directory``;
    symlinked directories are followed once (and checked like everything else)."""
    seen = set() if seen is None else seen
    seen.add(directory)
    for child in sorted(directory.iterdir()):
        name = f"{label}{child.name}"
        try:
            real = child.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ConfigPathError(written, f"{written!r} contains {name}, a broken or looping symlink") from None
        yield name, real
        if real.is_dir() and real not in seen and not any(real.is_relative_to(top) for top in NEVER_READ):
            yield from _walk(real, written, f"{name}/", seen)
