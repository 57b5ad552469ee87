"""The on-disk form of one object: a 16-byte header, then the (maybe compressed) payload.

    magic  b"BGO1"       4 bytes
    codec  0 raw | 1 zstd | 2 zstd-split   1 byte
    group  1, 2, 4 or 8  1 byte   element width
    shift  0, or codec 2's split bit       2 bytes (written as 0 before codec 2 existed)
    size   uint64 LE     8 bytes  uncompressed size

codec 1, byte grouping (any tensor): with width w, byte j of every element is written
together (all low bytes, then all high bytes for bf16), then zstd at level 1.

codec 2, bit split (bf16): each 16-bit element is cut into two bytes, P1 = bits ``shift``
.. ``shift + 7`` and P2 = the other eight (the top ``8 - shift`` bits above the low
``shift`` ones); all P1 bytes, then all P2 bytes, go into one zstd frame. ZipNN's
observation (the exponent is the only skewed part of a float) with a wider symbol: for
bf16 (sign, 8 exponent bits, 7 mantissa bits) shift 4 puts the exponent's low five bits
and the top three mantissa bits in P1, whose Huffman code then also captures how the
mantissa's top bits depend on the exponent; P2 holds the sign, the exponent's top three
bits (near-constant in weights) and four mantissa bits. zstd runs with settings that leave
its Huffman literal coder nearly alone: match finding on such streams costs time and loses
bytes. Measured on 0.02 * randn weights (bench/store_bench.py prints it): 0.684 of raw with
byte grouping at level 1, 0.663 split at 7 (exponent byte | sign + mantissa, as ZipNN), 0.657
at 5, 0.658 at 4; shift 4 because its P2 (five near-uniform bits) decodes twice as fast as
shift 5's (six). The order-0 entropy of the values is 0.654. Codecs 0 and 1 stay readable.
"""

import struct
import threading

import numpy as np
import zstandard

from . import kernels
from .errors import CorruptObjectError
from .safetensors_split import MAX_HEADER, PIECE_SIZE

MAGIC = b"BGO1"
HEADER = struct.Struct("<4sBBHQ")
HEADER_SIZE = HEADER.size
CODEC_RAW = 0
CODEC_ZSTD = 1
CODEC_ZSTD_SPLIT = 2
CODECS = (CODEC_RAW, CODEC_ZSTD, CODEC_ZSTD_SPLIT)
GROUP_WIDTHS = (1, 2, 4, 8)
SPLIT_SHIFTS = range(1, 9)
ZSTD_LEVEL = 1  # measured: level 1 is within 0.5% of level 3 on grouped bf16, ~2x faster
# codec 2: zstd's fast strategy with a tiny hash table and the longest minimum match finds
# almost no matches, so blocks are Huffman-coded literals (measured on bf16 split at 4:
# 0.658 of raw vs 0.667 at level 1, in half the time). The window must stay at 128 KiB or
# more: zstd's blocks are never bigger than the window, and each carries its Huffman table.
SPLIT_PARAMS = dict(window_log=17, hash_log=6, chain_log=6, search_log=1, min_match=7,
                    strategy=1, target_length=0)
# Which safetensors dtypes get codec 2, and the shifts tried on a sample of each piece: 4
# for weights; 8 (plain byte grouping) wins where the exponent's top bits vary, measured on
# values near 1 (norm weights: 0.392 vs 0.401) and on values spread over many octaves
# (0.808 vs 0.845). Floats' bytes hold no repeats worth matching, so byte-grouped floats
# use SPLIT_PARAMS too (measured on fp32 weights: 0.835 of raw vs 0.842 at level 1).
SPLIT_SHIFTS_TRIED = {"BF16": (4, 8)}
SAMPLE_SLICES, SAMPLE_SLICE = 4, 1 << 14  # elements: 2 x 128 KiB of planes, one zstd block each
FLOAT_DTYPES = frozenset({"BF16", "F16", "F32", "F64", "F8_E5M2", "F8_E4M3"})
# Keep compression only where it pays: random-looking payloads are stored raw and read at copy speed.
MIN_SAVING = 0.03
# The largest object store_file writes: a safetensors header piece (8-byte length + JSON).
# Tensor pieces (PIECE_SIZE), chunks and small blobs are all smaller.
MAX_OBJECT_SIZE = max(8 + MAX_HEADER, PIECE_SIZE)
# Elements per step of the bit split and merge: the temporaries stay in cache (measured:
# 2/3 of the time of whole-piece numpy passes).
_STEP = 1 << 17

_local = threading.local()


def _compressor(literals: bool = False):
    """A zstd compressor per thread: level 1, or tuned for Huffman-coded literals."""
    name = "literal_cctx" if literals else "cctx"
    c = getattr(_local, name, None)
    if c is None:
        c = (zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(**SPLIT_PARAMS))
             if literals else zstandard.ZstdCompressor(level=ZSTD_LEVEL))
        setattr(_local, name, c)
    return c


def _decompressor():
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def group_bytes(data, width: int):
    """Return a buffer with byte j of every width-byte element stored together."""
    if width == 1:
        return data
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, width).T.copy()


def ungroup_bytes(data, width: int, out=None):
    """Undo group_bytes; into ``out`` (a writable buffer of the same size) when given."""
    if width == 1:
        if out is None:
            return data
        np.copyto(np.frombuffer(out, dtype=np.uint8), np.frombuffer(data, dtype=np.uint8))
        return out
    planes = np.frombuffer(data, dtype=np.uint8).reshape(width, -1)
    if width == 2:  # the bit-split merge at shift 8 (P1 = high bytes) is ungrouping
        return _merge(planes[1], planes[0], 8, out)
    dest = np.frombuffer(out, dtype=np.uint8) if out is not None else np.empty(len(planes[0]) * width, np.uint8)
    columns = dest.reshape(-1, width)
    for j in range(width):  # column writes run ~10x faster than numpy's transpose copy
        columns[:, j] = planes[j]
    return dest


def _split_masks(shift: int) -> tuple[int, int]:
    low = (1 << shift) - 1
    return low | ((0xFF & ~low) << 8), low  # P2's bits within an element; its low part


def split_planes(data, shift: int) -> np.ndarray:
    """Bit split of 2-byte elements (see the module docstring): P1 bytes then P2 bytes."""
    if kernels.KERNELS == "c":
        return kernels.split_planes(data, shift)
    return split_planes_numpy(data, shift)


def split_planes_numpy(data, shift: int) -> np.ndarray:
    u = np.frombuffer(data, dtype="<u2")
    n = len(u)
    planes = np.empty(2 * n, dtype=np.uint8)
    keep, _ = _split_masks(shift)
    a, b = np.empty(min(n, _STEP), dtype="<u2"), np.empty(min(n, _STEP), dtype="<u2")
    for i in range(0, n, _STEP):
        j = min(i + _STEP, n)
        src, ta, tb = u[i:j], a[:j - i], b[:j - i]
        np.right_shift(src, shift, out=ta)
        np.copyto(planes[i:j], ta, casting="unsafe")  # keeps the low 8 bits: P1
        np.bitwise_and(src, keep, out=ta)
        np.right_shift(ta, 8, out=tb)
        np.bitwise_or(ta, tb, out=ta)  # low byte: top bits above the low ones
        np.copyto(planes[n + i:n + j], ta, casting="unsafe")
    return planes


def merge_planes(planes, shift: int, out=None):
    """Undo split_planes; into ``out`` (a writable buffer of the same size) when given."""
    p = np.frombuffer(planes, dtype=np.uint8)
    n = len(p) // 2
    return _merge(p[:n], p[n:], shift, out)


def merge_planes_numpy(planes, shift: int, out=None):
    """merge_planes without the C kernel (tests compare the two)."""
    p = np.frombuffer(planes, dtype=np.uint8)
    return _merge(p[:len(p) // 2], p[len(p) // 2:], shift, out, use_kernels=False)


def _merge(p1, p2, shift: int, out, use_kernels: bool = True):
    n = len(p1)
    dest = np.frombuffer(out, dtype="<u2") if out is not None else np.empty(n, dtype="<u2")
    if use_kernels and kernels.KERNELS == "c":
        kernels.merge(p1, p2, shift, dest)
        return out if out is not None else dest.view(np.uint8)
    keep, _ = _split_masks(shift)
    t = np.empty(min(n, _STEP), dtype="<u2")
    for i in range(0, n, _STEP):  # widen first: shifts in the native type run ~15% faster
        j = min(i + _STEP, n)
        d, tt = dest[i:j], t[:j - i]
        np.copyto(d, p1[i:j])
        np.left_shift(d, shift, out=d)
        np.copyto(tt, p2[i:j])
        np.multiply(tt, 257, out=tt)  # P2 in both bytes; keep its bits from each
        np.bitwise_and(tt, keep, out=tt)
        np.bitwise_or(d, tt, out=d)
    return out if out is not None else dest.view(np.uint8)


def encode(data, group: int = 1, dtype: str | None = None) -> bytes:
    """Compress ``data`` (any buffer) into the on-disk form. ``group`` = element width;
    ``dtype`` = the safetensors dtype of a tensor's bytes, when they are one."""
    return b"".join(encode_parts(data, group, dtype))


def encode_parts(data, group: int = 1, dtype: str | None = None) -> tuple:
    """:func:`encode` as (header, payload) buffers, so a writer need not join them."""
    size = memoryview(data).nbytes
    if group not in GROUP_WIDTHS or size % group:
        group = 1
    shifts = SPLIT_SHIFTS_TRIED.get(dtype) if group == 2 else None
    split = 0
    if shifts:
        split = best_shift(data, shifts)
        codec, payload = CODEC_ZSTD_SPLIT, _compressor(literals=True).compress(split_planes(data, split))
    else:
        literals = dtype in FLOAT_DTYPES
        codec, payload = CODEC_ZSTD, _compressor(literals).compress(group_bytes(data, group))
    if len(payload) > size * (1 - MIN_SAVING):
        return HEADER.pack(MAGIC, CODEC_RAW, 1, 0, size), data
    return HEADER.pack(MAGIC, codec, group, split, size), payload


def best_shift(data, shifts) -> int:
    """The shift whose split compresses a sample of ``data`` (2-byte elements) best: a few
    slices spread over it, ~2% of a 16 MiB piece's work. The first wins a tie."""
    u = np.frombuffer(data, dtype="<u2")
    if len(shifts) == 1:
        return shifts[0]
    if len(u) > SAMPLE_SLICES * SAMPLE_SLICE:
        starts = np.linspace(0, len(u) - SAMPLE_SLICE, SAMPLE_SLICES).astype(int)
        u = np.concatenate([u[i:i + SAMPLE_SLICE] for i in starts])
    cctx = _compressor(literals=True)
    sizes = [len(cctx.compress(split_planes(u, shift))) for shift in shifts]
    return shifts[sizes.index(min(sizes))]


def encoded_size_limit(size: int) -> int:
    """The most bytes the on-disk form of a ``size``-byte object can take: encode keeps
    zstd only when it is smaller, so anything longer did not come from bgit."""
    return HEADER_SIZE + size


def read_header(raw, oid: str, expected_size: int | None = None) -> tuple[int, int, int, int]:
    """(codec, group, shift, size) of an on-disk object, checked before anything is allocated.

    ``expected_size`` is what the manifest records for the object; without one the header
    may claim at most MAX_OBJECT_SIZE, the largest object bgit writes.
    """
    if len(raw) < HEADER_SIZE:
        raise CorruptObjectError(oid, "truncated header")
    magic, codec, group, shift, size = HEADER.unpack_from(raw)
    if magic != MAGIC or group not in GROUP_WIDTHS:
        raise CorruptObjectError(oid, "bad header")
    if codec not in CODECS:
        raise CorruptObjectError(oid, f"unknown codec {codec}")
    if codec == CODEC_ZSTD_SPLIT and (group != 2 or shift not in SPLIT_SHIFTS):
        raise CorruptObjectError(oid, f"bad split (group {group}, shift {shift})")
    if codec != CODEC_ZSTD_SPLIT and shift:
        raise CorruptObjectError(oid, "bad header")
    if expected_size is not None and size != expected_size:
        raise CorruptObjectError(oid, f"header claims {size} bytes, the manifest records {expected_size}")
    if size > MAX_OBJECT_SIZE:
        raise CorruptObjectError(oid, f"header claims {size} bytes, more than any object bgit writes")
    if size % group or len(raw) > encoded_size_limit(size):
        raise CorruptObjectError(oid, "wrong size")
    return codec, group, shift, size


def decode(raw, oid: str, expected_size: int | None = None, out=None):
    """Undo :func:`encode`; returns a buffer (bytes, memoryview or numpy array), or ``out``
    (a writable buffer of exactly the object's size) filled. Hash is not checked here.

    Memory stays within the size the header claims (checked against ``expected_size``
    first): zstd would otherwise allocate whatever its own frame header announces.
    """
    codec, group, shift, size = read_header(raw, oid, expected_size)
    if out is not None and memoryview(out).nbytes != size:
        raise ValueError(f"output buffer holds {memoryview(out).nbytes} bytes, the object {size}")
    body = memoryview(raw)[HEADER_SIZE:]
    if codec == CODEC_RAW:
        if len(body) != size:
            raise CorruptObjectError(oid, "wrong size")
        return ungroup_bytes(body, 1, out)
    data = _decompress(body, oid, size)
    if codec == CODEC_ZSTD_SPLIT:
        return merge_planes(data, shift, out)
    return ungroup_bytes(data, group, out)


def _decompress(body, oid: str, size: int) -> bytes:
    try:
        announced = zstandard.frame_content_size(body)
        if announced not in (size, -1):  # -1: not announced; max_output_size bounds it
            raise CorruptObjectError(oid, f"zstd frame claims {announced} bytes, the header {size}")
        data = _decompressor().decompress(body, max_output_size=size)
    except zstandard.ZstdError as e:
        raise CorruptObjectError(oid, f"cannot decompress ({e})") from None
    if len(data) != size:
        raise CorruptObjectError(oid, "wrong size")
    return data
