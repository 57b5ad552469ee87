"""Hooks: list, enable, disable (pre-bake, post-bake, pre-push)."""

from __future__ import annotations

from pathlib import Path

from bgit.api._open import RepoLike, open_repo
from bgit.repo import hooks as _hooks
from bgit.repo.hooks import HookInfo


def hooks_list(repo: RepoLike = ".") -> list[HookInfo]:
    return _hooks.list_hooks(open_repo(repo))


def hook_enable(repo: RepoLike = ".", name: str = "") -> Path:
    return _hooks.enable_hook(open_repo(repo), name)


def hook_disable(repo: RepoLike = ".", name: str = "") -> Path:
    return _hooks.disable_hook(open_repo(repo), name)
