"""Topping up a short stim list with bgit's bundled everyday user messages (TARGET.augment).

A behaviour baked from a dozen stims holds on those stims and little else: the adapter learns
the prompt's effect on a few contexts. ``augment_stims`` adds messages from
``bgit/data/user_messages.txt`` (a few hundred everyday user messages across many topics,
written for bgit, CC0) until the target has ``TARGET.augment.min_stims`` stims. The user's
own stims come first and are all kept; the added ones are sampled with the bake's seed,
skipping any that repeat (or nearly repeat) a stim already there. Rows carry
``"generator": "augment"`` so ``bgit stim`` shows where each came from.

The stim phase key includes the setting and the digest of the bundled file (keys.py), so a
new bgit release with other messages re-runs the stim phase instead of reusing stale rows.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

from bgit.record import stim_id
from bgit.util.files import hash_file

MESSAGES_FILE = Path(__file__).resolve().parent.parent / "data" / "user_messages.txt"
NEAR_DUPLICATE = 0.8  # word-set Jaccard similarity at which two stims count as one
_WORD = re.compile(r"[a-z0-9']+")


@lru_cache(maxsize=1)
def bundled_messages() -> tuple[str, ...]:
    """The bundled messages, in file order (comments and blank lines skipped)."""
    lines = MESSAGES_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def messages_digest() -> str:
    return hash_file(MESSAGES_FILE)


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.casefold()))


def near_duplicate(a: frozenset[str], b: frozenset[str]) -> bool:
    union = a | b
    return bool(union) and len(a & b) / len(union) >= NEAR_DUPLICATE


def augment_stims(rows: list[dict], min_stims: int, *, seed: int) -> list[dict]:
    """``rows`` plus bundled messages up to ``min_stims`` rows (``rows`` unchanged when it has
    enough, or ``min_stims`` is 0)."""
    wanted = min_stims - len(rows)
    if wanted <= 0:
        return rows
    taken = [words(row["text"]) for row in rows]
    candidates = list(bundled_messages())
    random.Random(seed).shuffle(candidates)
    added = []
    for text in candidates:
        if len(added) == wanted:
            break
        key = words(text)
        if any(near_duplicate(key, other) for other in taken):
            continue
        taken.append(key)
        added.append({"id": stim_id(text), "text": text, "generator": "augment"})
    return rows + added
