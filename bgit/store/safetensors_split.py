"""Recognise a safetensors file and lay it out as header + tensor pieces (+ any gap bytes).

Parsing is defensive: anything that is not a well-formed safetensors header (bad length,
bad JSON, overlapping or out-of-range offsets, size not matching dtype x shape) makes
:func:`parse_layout` return None and the file is stored as generic chunks instead.
"""

import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from . import kernels

PIECE_SIZE = 16 << 20
MAX_HEADER = 100 << 20
DTYPE_WIDTH = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_NUMPY = {"BOOL": "u1", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2",
          "I32": "<i4", "U32": "<u4", "F32": "<f4", "I64": "<i8", "U64": "<u8", "F64": "<f8"}
_NORM_BLOCK = 1 << 18  # measured: 2 MiB float64 temporaries beat smaller blocks (GIL churn) and bigger (cache)


@dataclass(frozen=True)
class TensorSpan:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int   # relative to the data section, as in the header
    end: int


@dataclass(frozen=True)
class Layout:
    header_size: int            # 8 + JSON length: the data section starts here
    tensors: tuple[TensorSpan, ...]   # sorted by offset
    metadata: dict


def parse_layout(head: bytes, file_size: int) -> Layout | None:
    """``head`` = the file's first bytes (at least 8 + header length, when available)."""
    if file_size < 8 or len(head) < 8:
        return None
    (n,) = struct.unpack_from("<Q", head)
    if n == 0 or n > MAX_HEADER or 8 + n > file_size or 8 + n > len(head):
        return None
    try:
        doc = json.loads(head[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    metadata = doc.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        return None
    spans = []
    for name, info in doc.items():
        span = _span(name, info)
        if span is None:
            return None
        spans.append(span)
    spans.sort(key=lambda s: (s.begin, s.end))
    pos, data_size = 0, file_size - 8 - n
    for s in spans:
        if s.begin < pos or s.end > data_size:
            return None  # overlapping or out of range
        pos = max(pos, s.end)
    return Layout(8 + n, tuple(spans), metadata)


def _span(name, info) -> TensorSpan | None:
    if not isinstance(info, dict):
        return None
    dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_WIDTH or not isinstance(shape, list) or not isinstance(offs, list):
        return None
    if len(offs) != 2 or not all(type(x) is int and x >= 0 for x in [*shape, *offs]):
        return None
    if offs[1] - offs[0] != math.prod(shape) * DTYPE_WIDTH[dtype]:
        return None
    return TensorSpan(name, dtype, tuple(shape), offs[0], offs[1])


def split_pieces(nbytes: int, width: int) -> list[tuple[int, int]]:
    """(begin, end) byte ranges of one tensor's pieces; boundaries are element-aligned."""
    step = max(width, PIECE_SIZE - PIECE_SIZE % width)
    return [(b, min(b + step, nbytes)) for b in range(0, nbytes, step)]


def sum_squares(data, dtype: str) -> float | None:
    """Sum of squares of a tensor piece in float64, or None for dtypes without a norm.

    Blocks of _NORM_BLOCK elements, each squared in float64 and summed by numpy (pairwise):
    manifests record the result, so the blocking and the summation order are part of the
    format (the same file must give the same manifest, whichever bgit wrote it). The C
    kernel, where built, sums in exactly this order."""
    if dtype in kernels.NORM_DTYPES:
        return kernels.sum_squares(data, dtype, _NORM_BLOCK)
    return sum_squares_numpy(data, dtype)


def sum_squares_numpy(data, dtype: str) -> float | None:
    arr = np.frombuffer(data, dtype=np.uint8)
    if dtype == "BF16":
        vals, widen = arr.view("<u2"), _bf16_to_f64
    elif dtype in _NUMPY:
        vals, widen = arr.view(_NUMPY[dtype]), _to_f64
    else:
        return None
    total = 0.0
    step = min(len(vals), _NORM_BLOCK)
    scratch = (np.empty(step, dtype=np.float64), np.empty(step, dtype=np.uint32))
    # Small blocks keep the float64 temporaries in cache; no BLAS (its threads spin).
    with np.errstate(invalid="ignore", over="ignore"):  # NaN or overflow: the norm is None then anyway
        for i in range(0, len(vals), _NORM_BLOCK):
            block = vals[i:i + _NORM_BLOCK]
            x = widen(block, *(buf[:len(block)] for buf in scratch))
            total += float(np.square(x, out=x).sum())
    return total


def _bf16_to_f64(u16, out, wide):
    """bf16 bit patterns -> float64 (exact), into ``out``."""
    np.left_shift(u16, 16, out=wide, dtype=np.uint32)
    np.copyto(out, wide.view(np.float32))
    return out


def _to_f64(vals, out, _wide):
    np.copyto(out, vals)
    return out


def norm_from_sum(total: float | None) -> float | None:
    if total is None or not math.isfinite(total):
        return None
    return math.sqrt(total)
