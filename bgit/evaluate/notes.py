"""Eval results kept beside a bake without rewriting history: a git note per commit.

The note lives on ``refs/notes/bgit-eval`` and holds the JSON of an :class:`EvalResult`,
so ``git log --notes=bgit-eval`` shows it and ``bgit log``/``bgit show`` read it with
:func:`read_eval`. A re-evaluation replaces the note (the notes ref keeps its own history).
"""

from __future__ import annotations

import json

from bgit.evaluate.results import EvalResult

NOTES_REF = "refs/notes/bgit-eval"


def read_eval(repo, commit) -> EvalResult | None:
    """The eval results stored for ``commit`` (a pygit2 Commit, an id or a ref), or None."""
    git = repo.git
    sha = _sha(repo, commit)
    try:
        note = git.lookup_note(sha, NOTES_REF)
    except KeyError:
        return None
    try:
        data = json.loads(note.message)
        return EvalResult.from_json(data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None  # a note bgit did not write


def write_eval(repo, commit, results: EvalResult) -> str:
    """Attach ``results`` to ``commit`` (replacing an older note); -> the note's blob id."""
    sha = _sha(repo, commit)
    text = json.dumps(results.to_json(), indent=2, sort_keys=True, default=str) + "\n"
    signature = repo.signature()
    with repo.lock("bgit eval"):
        return str(repo.git.create_note(text, signature, signature, sha, NOTES_REF, True))


def _sha(repo, commit) -> str:
    if hasattr(commit, "id"):
        return str(commit.id)
    text = str(commit)
    if len(text) == 40 and all(c in "0123456789abcdef" for c in text):
        return text
    return str(repo.resolve(text).id)
