"""The store's C kernels (bgit/store/_kernels.c) against their numpy forms: the same norms to
the last bit (manifests record them), the same split planes and merged elements, for every
shift and for lengths around the loops' block sizes. The test environment must have built
them (make setup does): a missing kernel is a failure here, never a skip."""

from __future__ import annotations

import numpy as np
import pytest

from bgit.store import codecs, kernels, safetensors_split as st
from store_helpers import bf16

NORM_BLOCK = st._NORM_BLOCK
LENGTHS = [0, 1, 7, 8, 9, 127, 128, 129, 1000, NORM_BLOCK - 1, NORM_BLOCK, 3 * NORM_BLOCK + 11]


def test_the_kernels_were_built():
    assert kernels.KERNELS == "c", "bgit/store/_kernels.c was not built: run `pip install -e .` with a C compiler"
    assert kernels.NORM_DTYPES == {"BF16", "F32", "F64"}


def wide_values(n: int, seed: int) -> np.ndarray:
    """Values over ~7 decades, where any change in the summation order changes the sum."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) * np.exp(rng.uniform(-8, 8, n))


@pytest.mark.parametrize("dtype", ["BF16", "F32", "F64"])
@pytest.mark.parametrize("n", LENGTHS)
def test_norms_equal_numpy_to_the_last_bit(dtype, n):
    x = wide_values(n, n)
    data = bf16(x).tobytes() if dtype == "BF16" else x.astype({"F32": "<f4", "F64": "<f8"}[dtype]).tobytes()
    expected = st.sum_squares_numpy(data, dtype)
    assert kernels.sum_squares(data, dtype, NORM_BLOCK) == expected
    assert st.sum_squares(data, dtype) == expected


@pytest.mark.parametrize("dtype", ["BF16", "F32", "F64"])
def test_non_finite_values_give_no_norm(dtype):
    x = np.array([1.0, np.inf, 2.0] if dtype != "F64" else [1.0, np.nan, 1e300])
    data = bf16(x).tobytes() if dtype == "BF16" else x.astype({"F32": "<f4", "F64": "<f8"}[dtype]).tobytes()
    assert st.norm_from_sum(kernels.sum_squares(data, dtype, NORM_BLOCK)) is None
    assert st.norm_from_sum(st.sum_squares_numpy(data, dtype)) is None


@pytest.mark.parametrize("shift", list(codecs.SPLIT_SHIFTS))
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 100_003])
def test_split_and_merge_equal_numpy(shift, n):
    data = np.random.default_rng(shift * n).integers(0, 1 << 16, n, dtype=np.uint16).tobytes()
    planes = codecs.split_planes(data, shift)
    assert bytes(planes) == bytes(codecs.split_planes_numpy(data, shift))
    out = bytearray(len(data))
    assert codecs.merge_planes(planes, shift, out) is out
    assert bytes(out) == data == bytes(codecs.merge_planes_numpy(planes, shift))


def test_the_kernels_refuse_wrong_sizes():
    with pytest.raises(ValueError):
        kernels.split_planes(b"abc", 4)  # half an element
    with pytest.raises(ValueError):
        kernels.merge(b"ab", b"a", 4, bytearray(4))
    with pytest.raises(ValueError):
        kernels.merge(b"ab", b"cd", 9, bytearray(4))
