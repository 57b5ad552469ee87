"""``bgit revert REF``: a new commit that undoes REF, as git revert does: a three-way merge of
HEAD and REF's parent with REF as the base, so every file REF changed returns to its version
before REF (for a bake: the previous bake's adapter/, targets/ and bake.yml), and everything
else stays as HEAD has it. input.yml merges key by key (bgit.config.merge).

Unlike git, a conflict (a later commit changed the same file) is not left half-done in the work
tree: nothing is changed and the error names the files; revert the later commits first, or use
``bgit reset``.
"""

from __future__ import annotations

from bgit.config.merge import merge_config_text
from bgit.record import INPUT_YML
from bgit.repo.errors import MergeError, MergeInProgressError
from bgit.repo.merge import read_state, three_way
from bgit.repo.reset import commit_tree_entries
from bgit.repo.trees import Entry


def revert_commit(repo, ref: str, message: str | None = None, mainline: int | None = None) -> str:
    """-> the id of the new commit on HEAD."""
    if read_state(repo) is not None:
        raise MergeInProgressError()
    commit = repo.resolve(ref)
    parent = _parent(commit, ref, mainline)
    plan = three_way(repo.tree_entries(commit), repo.tree_entries("HEAD"),
                     repo.tree_entries(parent) if parent is not None else {})
    keys = _merge_config(repo, plan, ref) if INPUT_YML in plan.conflicts else []
    if plan.conflicts:
        paths = [f"{p} (keys {', '.join(keys)})" if p == INPUT_YML else p for p in sorted(plan.conflicts)]
        raise MergeError(f"cannot revert {ref}: later commits changed {', '.join(paths)} too; "
                         "nothing was changed (revert those commits first, or use 'bgit reset')")
    summary = commit.message.splitlines()[0] if commit.message.strip() else str(commit.id)[:8]
    text = message or f'Revert "{summary}"\n\nThis reverts commit {commit.id}.\n'
    return commit_tree_entries(repo, plan.entries, text)


def _parent(commit, ref: str, mainline: int | None):
    parents = commit.parents
    if len(parents) > 1 and mainline is None:
        raise MergeError(f"{ref} is a merge commit: pass --mainline N to revert to its N-th parent (1 = ours)")
    if mainline is not None and not 1 <= mainline <= max(len(parents), 1) or (mainline and len(parents) < 2):
        raise MergeError(f"--mainline {mainline}: {ref} has {len(parents)} parent(s)")
    if not parents:
        return None
    return parents[(mainline or 1) - 1]


def _merge_config(repo, plan, ref: str) -> list[str]:
    """input.yml merged key by key into ``plan``; -> the keys that still conflict."""
    sides = plan.conflicts[INPUT_YML]
    texts = [None if e is None else repo.blob_data(e.oid).decode("utf-8") for e in sides]
    merged = merge_config_text(*texts, labels=("HEAD", f"parent of {ref}"))
    if not merged.clean:
        return merged.conflicts
    del plan.conflicts[INPUT_YML]
    if merged.text is not None:
        oid = repo.git.create_blob(merged.text.encode("utf-8"))
        plan.entries[INPUT_YML] = Entry(str(oid), int(sides[1].mode if sides[1] else 0o100644))
    return []
