"""JSONL rows of stim and rollout datasets, and the base64 arrays inside rollout rows.

Stim row: ``{"id": stim_id(text), "text": ..., "generator": ...}``. Rollout row: see
:func:`rollout_row` (the one encoder) and :class:`RolloutRecord` (the one decoder).

Arrays are stored as base64 of their little-endian bytes (int32 ids, float32
log-probs) so that a row stays one compact JSON line and decodes without pickle.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import blake3
import numpy as np

from bgit.errors import BgitError
from bgit.util.files import atomic_writer


class RecordError(BgitError):
    """A malformed JSONL row or array."""


def encode_array(arr: np.ndarray) -> str:
    little = np.ascontiguousarray(arr, dtype=np.asarray(arr).dtype.newbyteorder("<"))
    return base64.b64encode(little.tobytes()).decode("ascii")


def decode_array(text: str, dtype, shape) -> np.ndarray:
    raw = base64.b64decode(text)
    little = np.dtype(dtype).newbyteorder("<")
    if len(raw) % little.itemsize:
        raise RecordError(f"array of {len(raw)} bytes is not a whole number of {np.dtype(dtype).name}")
    arr = np.frombuffer(raw, dtype=little)
    try:
        arr = arr.reshape(shape)
    except ValueError:
        raise RecordError(f"array of {arr.size} {np.dtype(dtype).name} values does not fit shape {tuple(shape)}") from None
    return arr.astype(np.dtype(dtype).newbyteorder("="), copy=True)


def dumps_row(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def stim_id(text: str) -> str:
    """A stim's id: the first 12 hex digits of BLAKE3 of its UTF-8 text."""
    return blake3.blake3(text.encode("utf-8")).hexdigest()[:12]


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write rows atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(dumps_row(row) + "\n")
    return path


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text. Split on "\\n" only: ``str.splitlines`` also splits on
    U+2028, U+2029, U+0085 and other characters that a JSON string holds unescaped (a sampled
    response can), which would cut a row in two."""
    return text.split("\n")


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise RecordError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise RecordError(f"{path}:{number}: expected a JSON object")
            yield row


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return list(iter_jsonl(path))


@dataclass
class RolloutRecord:
    """One rollout row with its arrays decoded: T response tokens, K teacher entries each."""

    stim_id: str
    stim: str
    traj: int
    response: str
    response_ids: np.ndarray  # int64 [T]
    topk_ids: np.ndarray  # int32 [T, K]
    topk_logprobs: np.ndarray  # float32 [T, K]
    tail_logprob: np.ndarray  # float32 [T]

    @property
    def k(self) -> int:
        return self.topk_ids.shape[1]

    @classmethod
    def from_row(cls, row: dict) -> "RolloutRecord":
        try:
            ids = np.asarray(row["response_ids"], dtype=np.int64)
            k = int(row["k"])
            t = len(ids)
            return cls(
                stim_id=row["stim_id"],
                stim=row["stim"],
                traj=int(row["traj"]),
                response=row["response"],
                response_ids=ids,
                topk_ids=decode_array(row["topk_ids"], np.int32, (t, k)),
                topk_logprobs=decode_array(row["topk_logprobs"], np.float32, (t, k)),
                tail_logprob=decode_array(row["tail_logprob"], np.float32, (t,)),
            )
        except KeyError as error:
            raise RecordError(f"rollout row lacks field {error.args[0]!r}") from None

    def to_row(self) -> dict:
        return rollout_row(self.stim_id, self.stim, self.traj, self.response, self.response_ids,
                           self.topk_ids, self.topk_logprobs, self.tail_logprob)


def rollout_row(stim_id: str, stim: str, traj: int, response: str, response_ids, topk_ids, topk_logprobs,
                tail_logprob) -> dict:
    """One rollout row (docs/contracts.md): T response ids, the teacher's top-K ids and
    log-probs [T, K] at temperature 1, and the tail bucket log(1 - sum top-K p) [T]."""
    ids = np.asarray(topk_ids, dtype=np.int32)
    if ids.ndim != 2 or ids.shape[0] != len(response_ids):
        raise RecordError(f"rollout row for stim {stim_id}: top-K ids of shape {ids.shape} do not match "
                          f"{len(response_ids)} response tokens")
    return {
        "stim_id": stim_id,
        "stim": stim,
        "traj": int(traj),
        "response": response,
        "response_ids": [int(i) for i in response_ids],
        "k": int(ids.shape[1]),
        "topk_ids": encode_array(ids),
        "topk_logprobs": encode_array(np.asarray(topk_logprobs, dtype=np.float32)),
        "tail_logprob": encode_array(np.asarray(tail_logprob, dtype=np.float32)),
    }
