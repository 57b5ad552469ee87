"""Branches and tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pygit2

from bgit.repo.errors import BranchError

if TYPE_CHECKING:
    from bgit.repo.repository import Repository


@dataclass(frozen=True)
class RefInfo:
    name: str
    commit: str
    summary: str
    current: bool = False

    def to_json(self) -> dict:
        return {"name": self.name, "commit": self.commit, "summary": self.summary, "current": self.current}


def _check_name(name: str, what: str, prefix: str) -> str:
    if not name or name.startswith("-") or not pygit2.reference_is_valid_name(prefix + name):
        raise BranchError(f"'{name}' is not a valid {what} name")
    return name


def create_branch(repo: "Repository", name: str, start: str = "HEAD") -> RefInfo:
    _check_name(name, "branch", "refs/heads/")
    with repo.lock("bgit branch"):
        if repo.git.branches.local.get(name) is not None:
            raise BranchError(f"a branch named '{name}' already exists")
        commit = repo.resolve(start)
        repo.git.branches.local.create(name, commit)
    return RefInfo(name, str(commit.id), commit.message.splitlines()[0] if commit.message else "")


def delete_branch(repo: "Repository", name: str) -> None:
    with repo.lock("bgit branch"):
        branch = repo.git.branches.local.get(name)
        if branch is None:
            raise BranchError(f"branch '{name}' not found")
        if repo.current_branch() == name:
            raise BranchError(f"cannot delete branch '{name}': it is checked out")
        branch.delete()


def list_branches(repo: "Repository") -> list[RefInfo]:
    current = repo.current_branch()
    out = []
    for name in sorted(repo.git.branches.local):
        commit = repo.git.branches.local[name].peel(pygit2.Commit)
        out.append(RefInfo(name, str(commit.id), _summary(commit), name == current))
    return out


def create_tag(repo: "Repository", name: str, ref: str = "HEAD", message: str | None = None) -> RefInfo:
    """A lightweight tag, or an annotated one when ``message`` is given."""
    _check_name(name, "tag", "refs/tags/")
    with repo.lock("bgit tag"):
        if repo.git.references.get(f"refs/tags/{name}") is not None:
            raise BranchError(f"tag '{name}' already exists")
        commit = repo.resolve(ref)
        if message is None:
            repo.git.references.create(f"refs/tags/{name}", commit.id)
        else:
            repo.git.create_tag(name, commit.id, pygit2.enums.ObjectType.COMMIT, repo.signature(), message)
    return RefInfo(name, str(commit.id), _summary(commit))


def delete_tag(repo: "Repository", name: str) -> None:
    with repo.lock("bgit tag"):
        ref = repo.git.references.get(f"refs/tags/{name}")
        if ref is None:
            raise BranchError(f"tag '{name}' not found")
        ref.delete()


def list_tags(repo: "Repository") -> list[RefInfo]:
    out = []
    for ref_name in sorted(r for r in repo.git.references if r.startswith("refs/tags/")):
        commit = repo.git.references[ref_name].peel(pygit2.Commit)
        out.append(RefInfo(ref_name.removeprefix("refs/tags/"), str(commit.id), _summary(commit)))
    return out


def _summary(commit: pygit2.Commit) -> str:
    return commit.message.splitlines()[0] if commit.message.strip() else ""


# -- remote-tracking branches ----------------------------------------------------------------

def remote_branch_for(repo: "Repository", name: str) -> tuple[str, str] | None:
    """(remote, branch) when ``name`` is no local branch, tag or commit but exactly one
    remote has a branch of that name: what ``git checkout NAME`` turns into a new tracking
    branch. None otherwise."""
    if not name or repo.git.branches.local.get(name) is not None:
        return None
    try:
        repo.git.revparse_single(name)
        return None  # a tag, a commit, a remote-tracking name such as origin/main
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        pass
    found = [(remote, name) for remote in repo.git.remotes.names()
             if repo.git.references.get(f"refs/remotes/{remote}/{name}") is not None]
    return found[0] if len(found) == 1 else None


def set_upstream(repo: "Repository", branch: str, remote: str, remote_branch: str) -> None:
    """branch.<branch>.remote / .merge, as ``git branch --set-upstream-to`` writes them."""
    repo.git.config[f"branch.{branch}.remote"] = remote
    repo.git.config[f"branch.{branch}.merge"] = f"refs/heads/{remote_branch}"
