"""Which bakes a server serves, and what a request's ``model`` names right now.

Model names are refs (a branch, a tag, a short or full commit id given on the command line;
by default every branch and tag whose tip is a bake), ``base`` (the base model without
adapter), and the id (7+ hex digits) of any bake commit reachable from a served ref.

A ref is resolved when a request starts (:meth:`BakeRegistry.resolve`): a branch that gains a
new bake serves it from the next request on, and a request keeps the commit it started with.
Bake commits are immutable, so what is read from one is cached by its id.

pygit2 objects are not safe to share between threads: every repository read in the serving
layer holds :attr:`BakeRegistry.lock`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pygit2

from bgit.evaluate import NotABakeError, open_bake
from bgit.record import BakeRecordError
from bgit.repo.errors import RepoError
from bgit.serve.errors import (
    APIError,
    MixedBaseModelsError,
    NothingToServeError,
    ReservedModelNameError,
    model_not_found,
)

BASE = "base"
_COMMIT_ID = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class ServedModel:
    """What one request runs: ``name`` as the client wrote it, the commit it resolved to
    (None for ``base``) and that commit's adapter directory."""

    name: str
    commit: str | None = None
    adapter_dir: Path | None = None

    @property
    def adapter_name(self) -> str | None:
        """The PEFT adapter key: the adapter's content digest (the directory's name), so one
        adapter committed twice is loaded once, and a moved branch gets a new key."""
        return None if self.adapter_dir is None else f"bake_{self.adapter_dir.name}"

    @property
    def fingerprint(self) -> str:
        """OpenAI's ``system_fingerprint``: the commit that answered (``base`` for the base model)."""
        return self.commit or BASE


@dataclass(frozen=True)
class _BakeInfo:
    base_model: str | None  # None: the commit is not a bake (no bake.yml or no adapter)
    adapter_dir: Path | None


class BakeRegistry:
    """The served refs of one repository, all baked on one base model."""

    def __init__(self, repo, refs=None) -> None:
        self.repo = repo
        self.refs = tuple(refs) if refs else None  # None: every branch and tag, re-listed per call
        self.lock = threading.RLock()
        self._bakes: dict[str, _BakeInfo] = {}
        self.notes: list[str] = []
        self.first_bake, self.base_model = self._check()

    # -- start-up ------------------------------------------------------------------------

    def _check(self):
        """-> (the first served bake, its base model name); explicit refs must all be bakes
        of one base model, listed refs of another base model are left out (with a note)."""
        first = None
        for ref in self.refs or self._all_refs():
            if ref == BASE:
                raise ReservedModelNameError(ref)
            if self.refs is not None:
                bake = open_bake(self.repo, ref)  # UnknownRevisionError / NotABakeError name the ref
            else:
                info = self._info(str(self.repo.resolve(ref).id))
                if info.base_model is None:
                    continue
                bake = open_bake(self.repo, ref)
            if first is None:
                first = bake
            elif bake.base_model_name != first.base_model_name:
                if self.refs is not None:
                    raise MixedBaseModelsError(ref, bake.base_model_name, first.ref, first.base_model_name)
                self.notes.append(f"not serving {ref}: baked on {bake.base_model_name}, "
                                  f"not {first.base_model_name}")
        if first is None:
            raise NothingToServeError()
        return first, first.base_model_name

    def _all_refs(self) -> list[str]:
        """Every branch, then every tag not shadowed by a branch of the same name; the current
        branch first, so that it decides the base model."""
        current = self.repo.current_branch()
        branches = [b.name for b in self.repo.branches()]
        branches.sort(key=lambda name: name != current)
        return branches + [t.name for t in self.repo.tags() if t.name not in branches]

    # -- what is served ------------------------------------------------------------------

    def served_refs(self) -> list[tuple[str, str]]:
        """[(model name, commit id)] of the refs served now (listed refs: only bakes of our base)."""
        with self.lock:
            out = []
            for ref in self.refs or self._all_refs():
                try:
                    commit = str(self.repo.resolve(ref).id)
                except RepoError:
                    continue  # a served branch that was deleted
                if ref != BASE and self._info(commit).base_model == self.base_model:
                    out.append((ref, commit))
            return out

    def names(self) -> list[str]:
        return [name for name, _ in self.served_refs()] + [BASE]

    def resolve(self, name: str) -> ServedModel:
        """The model a request names, resolved now; APIError 404 for anything not served."""
        if name == BASE:
            return ServedModel(BASE)
        with self.lock:
            served = dict(self.served_refs())
            if name in served:
                commit = served[name]
            elif self.refs is not None and name in self.refs:
                raise APIError(404, f"The model `{name}` is not available: it no longer points at a bake "
                               f"of {self.base_model}.", param="model", code="model_not_found")
            elif _COMMIT_ID.match(name):
                commit = self._reachable_commit(name, served.values())
            else:
                commit = None
            if commit is None:
                raise model_not_found(name)
            info = self._info(commit)
            if info.base_model != self.base_model:
                raise APIError(400, f"The model `{name}` is baked on {info.base_model}; this server serves "
                               f"bakes of {self.base_model}.", param="model", code="base_model_mismatch")
            return ServedModel(name, commit, info.adapter_dir)

    def _reachable_commit(self, prefix: str, tips) -> str | None:
        try:
            commit = str(self.repo.git.revparse_single(prefix).peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):  # unknown, ambiguous, no commit
            return None
        if not commit.startswith(prefix):
            return None  # revparse also accepts ref names; only ids are meant here
        for tip in tips:
            if tip == commit or self.repo.git.descendant_of(tip, commit):
                return commit
        return None

    def _info(self, commit: str) -> _BakeInfo:
        """Cached per commit (commits are immutable): base model and adapter directory."""
        info = self._bakes.get(commit)
        if info is None:
            try:
                bake = open_bake(self.repo, commit)
                info = _BakeInfo(bake.base_model_name, bake.adapter_dir())
            except (NotABakeError, BakeRecordError):  # no bake.yml / adapter, or a bake.yml not bgit's
                info = _BakeInfo(None, None)
            self._bakes[commit] = info
        return info

    def open(self, commit: str):
        """The Bake at ``commit`` (for the web page); the caller holds :attr:`lock`."""
        return open_bake(self.repo, commit, require_adapter=False)

