"""Content-defined chunking, vectorised with numpy.

Two ways to find cut candidates, both content-defined (a cut depends only on nearby bytes,
so appending rows or editing one region leaves every other cut where it was):

* text (JSONL, CSV, ... : at least one newline per 64 KiB on average): a candidate sits
  after a newline when a hash of the line just ended is below a threshold proportional
  to the line's length, giving one candidate per 2**CUT_BITS bytes whatever the row size.
  The line hash mixes the length with SAMPLES bytes spread evenly over the line (through
  per-position gear tables) for lines of SHORT_LINE bytes or more, so long rows cost a
  fixed amount each, and with every byte (prefix sums of a gear table) for short lines.
  Whole rows always stay in one chunk.
* binary: the FastCDC gear hash H(i) = sum_{j<32} GEAR[b[i-j]] << j (mod 2**32), built for
  a whole block in five shift-and-add passes (window 1 -> 2 -> ... -> 32); a candidate
  where the top CUT_BITS bits of H are zero.

Cuts are then picked with a minimum and a maximum chunk size.
"""

import bisect

import blake3
import numpy as np

WINDOW = 32
CUT_BITS = 18                 # one candidate per 256 KiB on average
MIN_CHUNK = 64 << 10
MAX_CHUNK = 2 << 20           # average chunk ~ MIN_CHUNK + 2**CUT_BITS = 320 KiB
BLOCK = 8 << 20
TEXT_MAX_MEAN_LINE = 64 << 10
# Fixed forever: changing them moves every cut and so defeats dedup across versions.
SAMPLES = 64
_TABLE = np.frombuffer(blake3.blake3(b"bgit gear table v1").digest(length=8 * 256 * (SAMPLES + 1)), dtype="<u8")
GEAR = (_TABLE[:256] & 0xFFFFFFFF).astype(np.uint32)
LINE_GEAR = _TABLE[256:].reshape(SAMPLES, 256).copy()
_SAMPLE_POS = np.arange(SAMPLES)
SAMPLE_SHIFT = 6                # log2(SAMPLES)
SHORT_LINE = 256
_MIX = np.uint64(0x9E3779B97F4A7C15)
_THRESHOLD = np.uint32(1 << (32 - CUT_BITS))


def _gear_hash(block: np.ndarray) -> np.ndarray:
    h = GEAR[block]
    w = 1
    while w < WINDOW:
        h[w:] += h[:-w] << np.uint32(w)  # the shift makes a temporary: the add sees old values
        w *= 2
    return h


def _binary_candidates(buf: np.ndarray) -> list[int]:
    out = []
    for start in range(0, len(buf), BLOCK):
        lo = max(0, start - (WINDOW - 1))
        h = _gear_hash(buf[lo:start + BLOCK])
        hits = np.flatnonzero(h[start - lo:] < _THRESHOLD)
        out.extend((hits + (start + 1)).tolist())
    return out


def _line_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Hash of each line [start, end) (uint64); depends only on the line's own bytes."""
    length = ends - starts
    h = np.zeros(len(starts), dtype=np.uint64)
    long = length >= SHORT_LINE
    if long.any():
        # SAMPLES bytes spread evenly over the line: a fixed cost per row, not per byte.
        s, n = starts[long], length[long]
        idx = s[:, None] + ((_SAMPLE_POS[None, :] * n[:, None]) >> SAMPLE_SHIFT)
        h[long] = LINE_GEAR[_SAMPLE_POS[None, :], buf[idx]].sum(axis=1, dtype=np.uint64)
    if not long.all():
        # Short lines: every byte, via prefix sums over this batch (which starts at a line start).
        base = starts[0]
        prefix = np.zeros(ends[-1] - base + 1, dtype=np.uint32)  # sums wrap mod 2**32
        np.cumsum(np.take(GEAR, buf[base:ends[-1]]), dtype=np.uint32, out=prefix[1:])
        short = ~long
        h[short] = prefix[ends[short] - base] - prefix[starts[short] - base]
    return ((h ^ (length.astype(np.uint64) << np.uint64(40))) * _MIX) >> np.uint64(32)


def _text_candidates(buf: np.ndarray) -> list[int]:
    ends = np.flatnonzero(buf == 10) + 1
    if len(ends) == 0:
        return []
    starts = np.concatenate([[0], ends[:-1]])
    # Batches of whole lines of about BLOCK bytes (a longer line is a batch of its own).
    splits = np.unique(np.searchsorted(ends, np.arange(BLOCK, int(ends[-1]), BLOCK)))
    bounds = [0, *splits[(splits > 0) & (splits < len(ends))].tolist(), len(ends)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        s, e = starts[lo:hi], ends[lo:hi]
        h = _line_hashes(buf, s, e)
        limit = np.minimum((e - s).astype(np.uint64) << np.uint64(32 - CUT_BITS), np.uint64(1 << 32))
        out.extend(e[h < limit].tolist())
    return out


def is_text(buf: np.ndarray) -> bool:
    sample = buf[: 4 << 20]
    return len(sample) > 0 and np.count_nonzero(sample == 10) * TEXT_MAX_MEAN_LINE >= len(sample)


def candidate_cuts(data) -> list[int]:
    """Offsets (exclusive chunk ends) where the content allows a cut, ascending."""
    buf = np.frombuffer(data, dtype=np.uint8)
    return _text_candidates(buf) if is_text(buf) else _binary_candidates(buf)


def chunk_boundaries(data, min_size=MIN_CHUNK, max_size=MAX_CHUNK) -> list[int]:
    """Chunk end offsets covering ``data``; the last one is len(data)."""
    n = memoryview(data).nbytes
    cands = candidate_cuts(data)
    cuts, last = [], 0
    while n - last > min_size:
        i = bisect.bisect_left(cands, last + min_size)
        nxt = cands[i] if i < len(cands) else n
        nxt = min(nxt, last + max_size)
        if nxt >= n:
            break
        cuts.append(nxt)
        last = nxt
    if n:
        cuts.append(n)
    return cuts
