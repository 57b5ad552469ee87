"""The store's C kernels (bgit/store/_kernels.c) against their numpy forms: the same norms to
the last bit (manifests record them), the same split planes and merged elements, for every
shift, and the same codec 3 planes and exception lists, for lengths around the loops' block
sizes. The test environment must have built them (make setup does): a missing kernel is a
failure here, never a skip."""

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


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 1023, 1024, 1025, 8 * 1024 + 5, 100_003])
def test_pack_and_unpack_equal_numpy(n):
    """As many exceptions as allowed, each bit of the three differing somewhere, where the C
    loop's blocks of 1,024 elements and its eight sign passes begin and end."""
    x = 0.02 * np.random.default_rng(n).standard_normal(n)
    m = (n + 7) // 8
    edges = sorted({i for i in (0, n - 1, m - 1, m, 1023, 1024, 7 * m, n // 2) if i < n})
    spots = edges[:n // codecs.EXCEPTION_RATE]
    x[spots] = np.resize([0.0, np.inf, 3.0, 1e-20], len(spots))  # top exponent bits 000, 111, 100, 001
    data = bf16(x).tobytes()
    planes, expected = codecs.pack_planes(data, 3), codecs.pack_planes_numpy(data, 3)
    assert [bytes(p) for p in planes] == [bytes(p) for p in expected]
    assert len(planes[3]) == min(len(edges), n // codecs.EXCEPTION_RATE)
    p1, nibbles, signs, at, values = planes
    out = bytearray(len(data))
    assert codecs.unpack_planes(p1, nibbles, signs, 3, at, values, out) is out and bytes(out) == data
    assert bytes(codecs.unpack_planes_numpy(p1, nibbles, signs, 3, at, values)) == data


def test_pack_gives_up_past_one_exception_in_1024():
    x = np.full(4096, 0.02)
    x[:4] = 0.0  # four allowed in 4,096
    data = bf16(x).tobytes()
    assert len(codecs.pack_planes(data, 3)[3]) == len(codecs.pack_planes_numpy(data, 3)[3]) == 4
    x[4] = 0.0
    data = bf16(x).tobytes()
    assert codecs.pack_planes(data, 3) is None and codecs.pack_planes_numpy(data, 3) is None


def test_the_kernels_refuse_wrong_sizes():
    with pytest.raises(ValueError):
        kernels.split_planes(b"abc", 4)  # half an element
    with pytest.raises(ValueError):
        kernels.merge(b"ab", b"a", 4, bytearray(4))
    with pytest.raises(ValueError):
        kernels.merge(b"ab", b"cd", 9, bytearray(4))
    with pytest.raises(ValueError):  # nibbles for 3 elements, P1 for 4
        kernels.pack_planes(bytes(8), 3, bytearray(4), bytearray(1), bytearray(1), bytearray(0), bytearray(0))
    with pytest.raises(ValueError):
        kernels.unpack_planes(bytes(4), bytes(2), bytes(1), 9, b"", b"", bytearray(8))


def test_without_the_kernels_bf16_is_written_as_codec_2_and_codec_3_still_reads(monkeypatch):
    x = 0.02 * np.random.default_rng(8).standard_normal(200_001)
    x[[5, 70_000]] = 0.0
    data = bf16(x).tobytes()
    packed = codecs.encode(data, 2, "BF16")
    assert codecs.HEADER.unpack_from(packed)[1] == codecs.CODEC_ZSTD_PACK
    monkeypatch.setattr(kernels, "KERNELS", "numpy")
    split = codecs.encode(data, 2, "BF16")
    assert codecs.HEADER.unpack_from(split)[1:4] == (codecs.CODEC_ZSTD_SPLIT, 2, 4)
    assert bytes(codecs.decode(packed, "x" * 64, len(data))) == data == bytes(codecs.decode(split, "x" * 64, len(data)))
