"""The store's per-element loops (norms, codec 2's split and merge, codec 3's pack and
unpack): the C extension ``_kernels`` where it was built, else numpy.

Both give the same bytes and the same floats (tests/test_store_kernels.py compares them); C
reads the data once where numpy makes four to six passes, so commits spend about a fifth less
CPU (bench/store_bench.py prints which ran). ``pip install`` builds the extension (setup.py
declares it) where a C compiler exists; without one it skips it and ``KERNELS`` is "numpy".
"""

import sys

import numpy as np

try:
    if sys.byteorder != "little":  # the C loops read little-endian elements
        raise ImportError("big-endian host")
    from . import _kernels
except ImportError:
    _kernels = None

KERNELS = "c" if _kernels is not None else "numpy"
_KIND = {"BF16": 0, "F32": 1, "F64": 2}
NORM_DTYPES = frozenset(_KIND) if _kernels is not None else frozenset()  # sum_squares takes these


def sum_squares(data, dtype: str, block: int) -> float:
    """safetensors_split.sum_squares for a dtype in NORM_DTYPES, in blocks of ``block`` elements."""
    return _kernels.sum_squares(data, _KIND[dtype], block)


def split_planes(data, shift: int) -> np.ndarray:
    """codecs.split_planes; only where KERNELS is "c"."""
    planes = np.empty(memoryview(data).nbytes, dtype=np.uint8)
    _kernels.split_planes(data, shift, planes)
    return planes


def merge(p1, p2, shift: int, out) -> None:
    """codecs._merge into ``out`` (2 bytes per element of p1); only where KERNELS is "c"."""
    _kernels.merge_planes(p1, p2, shift, out)


def pack_planes(data, mode: int, p1, nibbles, signs, at, values) -> int:
    """codec 3's planes into the given arrays (codecs.pack_planes); the number of
    exceptions, or -1 when more than ``values`` holds. Only where KERNELS is "c"."""
    return _kernels.pack_planes(data, mode, p1, nibbles, signs, at, values)


def unpack_planes(p1, nibbles, signs, mode: int, at, values, out) -> bool:
    """Undo pack_planes into ``out``; False when the exceptions are malformed. Only where
    KERNELS is "c"."""
    return _kernels.unpack_planes(p1, nibbles, signs, mode, at, values, out)
