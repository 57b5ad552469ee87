"""git's verbs for bakes: merge (and --continue / --abort), revert, reset, rm."""

from __future__ import annotations

from dataclasses import dataclass

from bgit.api._open import RepoLike, open_repo
from bgit.api.repo import CommitResult
from bgit.pipeline.merge import MergeOptions, MergeOutcome, finish_merge, start_merge
from bgit.pipeline.revert import revert_commit
from bgit.repo import reset as _reset
from bgit.repo.errors import NoMergeInProgressError
from bgit.repo.merge import clear_state, read_state
from bgit.repo.reset import ResetResult
from bgit.util.progress import SILENT, Reporter


def merge(repo: RepoLike = ".", ref: str = "", message: str | None = None, bake: bool = True,
          strategy: str = "train", combination: str = "linear", weights: tuple[float, float] = (0.5, 0.5),
          density: float | None = None, seed: int = 0, reporter: Reporter = SILENT) -> MergeOutcome:
    """Merge ``ref`` into HEAD: input.yml key by key, the rest file by file, then (``strategy``)
    bake the union of both sides' targets (``train``: stim and rollout come from the phase
    cache, only training runs) or combine the two adapters (``weights``: PEFT
    add_weighted_adapter with ``combination``, ``weights``, ``density``); ``bake=False``
    commits the merged config alone. A conflict leaves the merge in progress (kind
    "conflict"): edit, then :func:`merge_continue`, or :func:`merge_abort`."""
    options = MergeOptions("none" if not bake else strategy, combination, tuple(weights), density, seed)
    return start_merge(open_repo(repo, reporter), ref, options, message, reporter)


def merge_continue(repo: RepoLike = ".", reporter: Reporter = SILENT) -> MergeOutcome:
    """Finish the merge in progress once input.yml has no conflict markers left and other
    conflicting files are ``bgit add``-ed; an interrupted merge bake resumes from its phases."""
    return finish_merge(open_repo(repo, reporter), reporter)


def merge_abort(repo: RepoLike = ".", reporter: Reporter = SILENT) -> ResetResult:
    """Undo the merge in progress: index and work tree back to HEAD, MERGE_HEAD removed."""
    repo = open_repo(repo, reporter)
    state = read_state(repo)
    if state is None:
        raise NoMergeInProgressError()
    result = _reset.reset(repo, "HEAD", "hard")
    clear_state(repo)
    return result


@dataclass
class RevertResult(CommitResult):
    reverted: str = ""

    def to_json(self) -> dict:
        return {**super().to_json(), "reverted": self.reverted}


def revert(repo: RepoLike = ".", ref: str = "HEAD", message: str | None = None,
           mainline: int | None = None, reporter: Reporter = SILENT) -> RevertResult:
    """A new commit undoing ``ref``: the files it changed return to their version in its parent
    (for a bake, the previous bake's adapter, targets and bake.yml)."""
    repo = open_repo(repo, reporter)
    reverted = str(repo.resolve(ref).id)
    commit_id = revert_commit(repo, ref, message, mainline)
    summary = repo.resolve(commit_id).message.splitlines()[0]
    return RevertResult(commit_id, repo.current_branch(), summary, reverted)


def reset(repo: RepoLike = ".", ref: str = "HEAD", mode: str = "mixed", reporter: Reporter = SILENT) -> ResetResult:
    """Move the current branch to ``ref`` (git's --soft / --mixed / --hard); --hard
    materialises ``ref``'s payloads, fetching missing ones from the remote."""
    return _reset.reset(open_repo(repo, reporter), ref, mode)


def rm(repo: RepoLike = ".", paths=(), cached: bool = False, recursive: bool = False,
       force: bool = False) -> list[str]:
    """Stop tracking ``paths`` and delete them (``cached``: keep the files); -> removed paths."""
    return _reset.rm(open_repo(repo), paths, cached=cached, recursive=recursive, force=force)
