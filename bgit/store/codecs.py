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
shift 5's (six). The order-0 entropy of the values is 0.654.

codec 3, bit split with P2 packed (bf16 at shift 4): P2's five near-uniform bits gain nothing
from entropy coding, yet zstd spent a third to half of its time on them. Only P1 goes
through zstd; the low four bits are stored two per byte, the signs eight per byte, raw; the
exponent's top three bits, one value in nearly every weight, are stored once, with a list of
the elements that differ (zeros, mostly). The body after the 16-byte header:

    PACK_HEADER   P1's zstd frame length (uint32), exceptions (uint32), mode (uint8), 3 zero bytes
    zstd frame of P1 (n bytes)
    nibbles       ceil(n/2) bytes: low bits of element k | those of element k + ceil(n/2) << 4
    signs         ceil(n/8) bytes: bit j of byte k = the sign of element j * ceil(n/8) + k
    exceptions    their element indexes (uint32, ascending), then their top three bits (uint8)

Chosen where shift 4 wins, a sample's packed bits carry at least PACK_MIN_ENTROPY bits (so
they really are near-uniform), at most one element in EXCEPTION_RATE differs from the mode,
and the C kernels run; otherwise codec 2. Measured on one 16.8 MB piece of 0.02 * randn
weights, one core (bench/store_bench.py): encode 815 -> 952 MB/s with the sampling, decode
1,211 -> 1,638 MB/s, the same 0.658 of raw. Codecs 0, 1 and 2 stay readable.
"""

import itertools
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
CODEC_ZSTD_PACK = 3
CODECS = (CODEC_RAW, CODEC_ZSTD, CODEC_ZSTD_SPLIT, CODEC_ZSTD_PACK)
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
# codec 3 (see the module docstring)
PACK_SHIFT = 4
PACK_HEADER = struct.Struct("<IIB3x")
# Uniform five bits carry 5; Gaussian weights' 4.999. Below this the bits are skewed (values
# with fewer mantissa bits, like fp8 or int4 upcasts) and zstd codes them smaller: codec 2.
PACK_MIN_ENTROPY = 4.98
EXCEPTION_RATE = 1024  # at most one exception per this many elements: 5 bytes each
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
    """:func:`encode` as (header, payload, ...) buffers, so a writer need not join them."""
    size = memoryview(data).nbytes
    if group not in GROUP_WIDTHS or size % group:
        group = 1
    shifts = SPLIT_SHIFTS_TRIED.get(dtype) if group == 2 else None
    split, payload = 0, None
    if shifts:
        sample = _sample(data)
        split = best_shift(sample, shifts)
        # numpy's pack and unpack run 6-8x slower than codec 2's split and merge (the store
        # bench's step lines): without the C kernels, codec 2 is the faster choice and
        # codec 3 is only read
        payload = _encode_packed(data, sample) if split == PACK_SHIFT and kernels.KERNELS == "c" else None
        codec = CODEC_ZSTD_PACK
        if payload is None:
            codec, payload = CODEC_ZSTD_SPLIT, (_compressor(literals=True).compress(split_planes(data, split)),)
    else:
        literals = dtype in FLOAT_DTYPES
        codec, payload = CODEC_ZSTD, (_compressor(literals).compress(group_bytes(data, group)),)
    if sum(memoryview(b).nbytes for b in payload) > size * (1 - MIN_SAVING):
        return HEADER.pack(MAGIC, CODEC_RAW, 1, 0, size), data
    return (HEADER.pack(MAGIC, codec, group, split, size), *payload)


def _sample(data) -> np.ndarray:
    """A few slices spread over ``data`` (2-byte elements), ~2% of a 16 MiB piece."""
    u = np.frombuffer(data, dtype="<u2")
    if len(u) > SAMPLE_SLICES * SAMPLE_SLICE:
        starts = np.linspace(0, len(u) - SAMPLE_SLICE, SAMPLE_SLICES).astype(int)
        u = np.concatenate([u[i:i + SAMPLE_SLICE] for i in starts])
    return u


def best_shift(sample, shifts) -> int:
    """The shift whose split compresses ``sample`` (2-byte elements) best; the first wins a tie."""
    if len(shifts) == 1:
        return shifts[0]
    cctx = _compressor(literals=True)
    sizes = [len(cctx.compress(split_planes(sample, shift))) for shift in shifts]
    return shifts[sizes.index(min(sizes))]


def _encode_packed(data, sample) -> tuple | None:
    """codec 3's body as buffers, or None where the sample or the exceptions say codec 2."""
    u = np.asarray(sample)
    if not len(u):
        return None
    counts = np.bincount(((u >> 11) & 0x10) | (u & 0xF), minlength=32) / len(u)
    counts = counts[counts > 0]
    if -(counts * np.log2(counts)).sum() < PACK_MIN_ENTROPY:
        return None
    mode = int(np.bincount((u >> 12) & 7, minlength=8).argmax())
    planes = pack_planes(data, mode)
    if planes is None:
        return None
    p1, nibbles, signs, at, values = planes
    frame = _compressor(literals=True).compress(p1)
    return PACK_HEADER.pack(len(frame), len(values), mode), frame, nibbles, signs, at, values


def pack_planes(data, mode: int) -> tuple | None:
    """codec 3's (P1, nibbles, signs, exception indexes, exception values) of 2-byte
    elements whose top three exponent bits are mostly ``mode``; None where more than one
    element in EXCEPTION_RATE differs."""
    if kernels.KERNELS != "c":
        return pack_planes_numpy(data, mode)
    n = memoryview(data).nbytes // 2
    p1, nibbles, signs = np.empty(n, np.uint8), np.empty((n + 1) // 2, np.uint8), np.empty((n + 7) // 8, np.uint8)
    cap = n // EXCEPTION_RATE
    at, values = np.empty(cap, "<u4"), np.empty(cap, np.uint8)
    count = kernels.pack_planes(data, mode, p1, nibbles, signs, at, values)
    if count < 0:
        return None
    return p1, nibbles, signs, at[:count], values[:count]


def pack_planes_numpy(data, mode: int) -> tuple | None:
    """pack_planes without the C kernel (tests compare the two)."""
    u = np.frombuffer(data, dtype="<u2")
    n = len(u)
    h, m = (n + 1) // 2, (n + 7) // 8
    low = np.zeros(2 * h, np.uint8)
    low[:n] = u & 0xF
    sign = np.zeros(8 * m, np.uint8)
    sign[:n] = u >> 15
    signs = np.zeros(m, np.uint8)
    for j, part in enumerate(sign.reshape(8, m)):  # 5x faster than packbits across rows
        signs |= part << j
    at = np.flatnonzero(((u >> 12) & 7) != mode).astype("<u4")
    if len(at) > n // EXCEPTION_RATE:
        return None
    return ((u >> 4).astype(np.uint8), low[:h] | (low[h:] << 4), signs, at, ((u[at] >> 12) & 7).astype(np.uint8))


def unpack_planes(p1, nibbles, signs, mode: int, at, values, out=None):
    """Undo pack_planes into ``out`` (2 bytes per element of p1) or a new array. Raises
    ValueError on malformed exceptions (out of order or range, or equal to the mode)."""
    if kernels.KERNELS != "c":
        return unpack_planes_numpy(p1, nibbles, signs, mode, at, values, out)
    dest = out if out is not None else np.empty(2 * len(p1), np.uint8)
    if not kernels.unpack_planes(p1, nibbles, signs, mode, at, values, dest):
        raise ValueError("malformed exceptions")
    return dest


def unpack_planes_numpy(p1, nibbles, signs, mode: int, at, values, out=None):
    """unpack_planes without the C kernel (tests compare the two)."""
    p1, nibbles, signs = (np.frombuffer(b, np.uint8) for b in (p1, nibbles, signs))
    at, values = np.frombuffer(at, "<u4"), np.frombuffer(values, np.uint8)
    n = len(p1)
    h, m = (n + 1) // 2, (n + 7) // 8
    if len(nibbles) != h or len(signs) != m or len(at) != len(values):
        raise ValueError("bad buffer sizes")
    if len(at) and (at[-1] >= n or (np.diff(at.astype(np.int64)) <= 0).any() or (values > 7).any()
                    or (values == mode).any()):
        raise ValueError("malformed exceptions")
    u = p1.astype("<u2") << 4
    u |= np.concatenate([nibbles & 0xF, nibbles >> 4])[:n]
    u |= np.uint16(mode << 12)
    sign = np.empty((8, m), "<u2")
    for j in range(8):
        np.right_shift(signs, j, out=sign[j], casting="unsafe")
    u |= (sign.reshape(-1)[:n] & 1) << 15
    u[at] = (u[at] & ~np.uint16(0x7000)) | (values.astype("<u2") << 12)
    if out is None:
        return u.view(np.uint8)
    np.copyto(np.frombuffer(out, dtype="<u2"), u)
    return out


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
        # Codecs are only ever added: a number past the last may be a newer bgit's, not damage.
        raise CorruptObjectError(oid, f"unknown codec {codec} (this bgit reads codecs 0-{CODECS[-1]}; "
                                      "if a newer bgit wrote it, upgrade to read it)")
    if codec == CODEC_ZSTD_SPLIT and (group != 2 or shift not in SPLIT_SHIFTS):
        raise CorruptObjectError(oid, f"bad split (group {group}, shift {shift})")
    if codec == CODEC_ZSTD_PACK and (group != 2 or shift != PACK_SHIFT):
        raise CorruptObjectError(oid, f"bad split (group {group}, shift {shift})")
    if codec not in (CODEC_ZSTD_SPLIT, CODEC_ZSTD_PACK) and shift:
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
    if codec == CODEC_ZSTD_PACK:
        return _decode_packed(body, oid, size, out)
    data = _decompress(body, oid, size)
    if codec == CODEC_ZSTD_SPLIT:
        return merge_planes(data, shift, out)
    return ungroup_bytes(data, group, out)


def _decode_packed(body, oid: str, size: int, out):
    n = size // 2
    if len(body) < PACK_HEADER.size:
        raise CorruptObjectError(oid, "wrong size")
    frame_size, exceptions, mode = PACK_HEADER.unpack_from(body)
    if mode > 7:
        raise CorruptObjectError(oid, "bad header")
    sizes = [PACK_HEADER.size, frame_size, (n + 1) // 2, (n + 7) // 8, 4 * exceptions, exceptions]
    ends = list(itertools.accumulate(sizes))
    if ends[-1] != len(body):
        raise CorruptObjectError(oid, "wrong size")
    frame, nibbles, signs, at, values = (body[b:e] for b, e in zip(ends[:-1], ends[1:]))
    try:
        return unpack_planes(_decompress(frame, oid, n), nibbles, signs, mode, at, values, out)
    except ValueError:
        raise CorruptObjectError(oid, "malformed exceptions") from None


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
