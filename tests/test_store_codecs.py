"""Object codecs: codecs 2 and 3 (bit split of bf16; codec 3 packs the split's near-uniform
bits raw) round trip, are chosen for bf16 tensors where each wins, catch corruption, decode
within the recorded size and refuse hostile headers; objects written by earlier bgit (codecs
0 and 1, tests/data/store-56c7710) still read, and the same file still gives the same
manifest."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zstandard

from bgit.store import CorruptObjectError, FileCorruptError, Manifest, Store, codecs, hash_bytes
from store_helpers import bf16, write_mixed_safetensors

OLD_STORE = Path(__file__).parent / "data" / "store-56c7710"


@pytest.fixture
def store(tmp_path):
    return Store.init(tmp_path / ".git" / "bgit")


def weights_bf16(n: int, seed: int = 0) -> bytes:
    return bf16(0.02 * np.random.default_rng(seed).standard_normal(n)).tobytes()


def header_of(raw: bytes) -> tuple:
    return codecs.HEADER.unpack_from(raw)


# -- the bit split ------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", list(codecs.SPLIT_SHIFTS))
@pytest.mark.parametrize("elements", [0, 1, 7, codecs._STEP, codecs._STEP * 2 + 3])
def test_split_and_merge_are_inverse_for_every_shift(shift, elements):
    data = np.random.default_rng(elements + shift).integers(0, 1 << 16, elements, dtype=np.uint16).tobytes()
    planes = codecs.split_planes(data, shift)
    assert len(planes) == len(data)
    assert bytes(codecs.merge_planes(planes, shift)) == data
    out = bytearray(len(data))
    assert codecs.merge_planes(planes, shift, out) is out and bytes(out) == data


def test_split_puts_the_exponent_with_the_top_mantissa_bits():
    # bf16 1.5 = 0x3FC0: sign 0, exponent 0x7F, mantissa 0x40. At shift 4, P1 = bits 4..11
    # (exponent's low five bits, mantissa's top three), P2 = bits 12..15 over bits 0..3.
    planes = codecs.split_planes(np.array([0x3FC0], dtype="<u2").tobytes(), 4)
    assert list(planes) == [0xFC, 0x30]


def test_bf16_weights_use_codec_3_and_store_smaller(store, tmp_path):
    data = weights_bf16(1 << 20)
    packed = codecs.encode(data, 2, "BF16")
    split = codec_2_object(data)
    grouped = codecs.encode(data, 2)
    assert header_of(packed)[1:4] == (codecs.CODEC_ZSTD_PACK, 2, 4)
    assert header_of(grouped)[1:4] == (codecs.CODEC_ZSTD, 2, 0)
    assert len(packed) <= len(split) and len(packed) / len(data) < 0.665 < len(grouped) / len(data)
    assert bytes(codecs.decode(packed, "x" * 64, len(data))) == data
    assert bytes(codecs.decode(split, "x" * 64, len(data))) == data  # codec 2 objects still read
    # store_file picks it for BF16 tensors only; the file comes back byte for byte
    src = tmp_path / "adapter.safetensors"
    write_mixed_safetensors(src)
    manifest = store.store_file(src)
    codec_of = {oid: header_of(store.read_raw(oid))[1] for oid, _ in manifest.pieces}
    by_dtype = {t.dtype: {codec_of[p] for p in t.pieces} for t in manifest.tensors}
    assert by_dtype.pop("BF16") == {codecs.CODEC_ZSTD_PACK}
    assert set(by_dtype) == {"F32", "F16", "I64"}
    assert all(used.isdisjoint({codecs.CODEC_ZSTD_SPLIT, codecs.CODEC_ZSTD_PACK}) for used in by_dtype.values())
    store.materialise(manifest, tmp_path / "out" / src.name)
    assert (tmp_path / "out" / src.name).read_bytes() == src.read_bytes()


def codec_2_object(data: bytes, shift: int = 4) -> bytes:
    return (codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_ZSTD_SPLIT, 2, shift, len(data))
            + codecs._compressor(True).compress(codecs.split_planes(data, shift)))


def test_codec_3_lists_the_elements_outside_the_common_exponent_range():
    """Zeros (and values below 2**-31) have other top exponent bits than the weights around
    them: up to one element in EXCEPTION_RATE is listed, more falls back to codec 2."""
    n = 1 << 20
    x = 0.02 * np.random.default_rng(5).standard_normal(n)
    few = x.copy()
    few[[0, 1023, 1024, n // 2, n - 1]] = [0.0, 3.0, -0.0, 1e-20, 0.0]
    raw = codecs.encode(bf16(few).tobytes(), 2, "BF16")
    frame_size, exceptions, mode = codecs.PACK_HEADER.unpack_from(raw, codecs.HEADER_SIZE)
    assert header_of(raw)[1] == codecs.CODEC_ZSTD_PACK and (exceptions, mode) == (5, 3)
    assert bytes(codecs.decode(raw, "x" * 64, 2 * n)) == bf16(few).tobytes()
    many = x.copy()
    many[::1000] = 0.0  # 1,049 zeros: more than one in 1,024
    raw = codecs.encode(bf16(many).tobytes(), 2, "BF16")
    assert header_of(raw)[1:4] == (codecs.CODEC_ZSTD_SPLIT, 2, 4)
    assert bytes(codecs.decode(raw, "x" * 64, 2 * n)) == bf16(many).tobytes()


def test_values_with_few_mantissa_bits_keep_codec_2():
    """Upcast fp8 values leave the low mantissa bits zero: zstd codes them in far fewer than
    the five raw bits codec 3 would store, so the entropy check keeps codec 2."""
    bits = bf16(0.02 * np.random.default_rng(6).standard_normal(1 << 18)) & np.uint16(0xFFF0)
    data = bits.tobytes()
    raw = codecs.encode(data, 2, "BF16")
    assert header_of(raw)[1:4] == (codecs.CODEC_ZSTD_SPLIT, 2, 4)
    p1, nibbles, signs, at, values = codecs.pack_planes(data, 3)
    packed_size = len(codecs._compressor(True).compress(p1)) + len(nibbles) + len(signs) + 5 * len(at)
    assert len(raw) < packed_size
    assert bytes(codecs.decode(raw, "x" * 64, len(data))) == data


def test_values_near_one_keep_byte_grouping():
    """Where the exponent's top bits vary (values around 1), the sample picks shift 8."""
    rng = np.random.default_rng(4)
    norms = bf16(1 + 0.1 * rng.standard_normal(200_000)).tobytes()
    raw = codecs.encode(norms, 2, "BF16")
    assert header_of(raw)[1:4] == (codecs.CODEC_ZSTD_SPLIT, 2, 8)
    other = codec_2_object(norms)
    assert len(raw) < len(other)
    assert bytes(codecs.decode(raw, "x" * 64, len(norms))) == norms
    assert bytes(codecs.decode(other, "x" * 64, len(norms))) == norms


def test_random_bf16_bits_are_stored_raw(store):
    noise = np.random.default_rng(3).integers(0, 1 << 16, 1 << 16, dtype=np.uint16).tobytes()
    raw = codecs.encode(noise, 2, "BF16")
    assert header_of(raw)[1:4] == (codecs.CODEC_RAW, 1, 0) and raw[codecs.HEADER_SIZE:] == noise


def test_decode_into_a_buffer_and_reads_of_large_objects(store):
    data = weights_bf16(3 << 20)  # 6 MiB: read with O_DIRECT where the filesystem allows it
    oid = hash_bytes(data)
    store._put_encoded(oid, lambda: codecs.encode_parts(data, 2, "BF16"), sync_dir=True)
    out = bytearray(len(data))
    assert store.get_buffer(oid, size=len(data), out=out) is out and bytes(out) == data
    assert store.get_bytes(oid, size=len(data)) == data
    with pytest.raises(ValueError, match="output buffer holds 5 bytes"):
        codecs.decode(store.read_raw(oid), oid, len(data), bytearray(5))


# -- corruption and hostile headers ---------------------------------------------------------------

def corrupt(store, oid, offset_from_end=100):
    path = store.object_path(oid)
    os.chmod(path, 0o644)
    raw = bytearray(path.read_bytes())
    raw[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("part", ["signs", "nibbles", "P1's frame"])
def test_a_flipped_bit_in_a_codec_3_object_is_caught(store, tmp_path, part):
    src = tmp_path / "w.safetensors"
    write_mixed_safetensors(src)
    manifest = store.store_file(src)
    (tensor,) = [t for t in manifest.tensors if t.dtype == "BF16"]
    victim = tensor.pieces[0]
    size = dict(manifest.pieces)[victim]
    raw = store.read_raw(victim)
    assert header_of(raw)[1] == codecs.CODEC_ZSTD_PACK
    frame_size, exceptions, _ = codecs.PACK_HEADER.unpack_from(raw, codecs.HEADER_SIZE)
    n = size // 2
    signs, nibbles = (n + 7) // 8, (n + 1) // 2
    assert exceptions == 0  # the parts end the object in this order
    corrupt(store, victim, {"signs": signs // 2, "nibbles": signs + nibbles // 2,
                            "P1's frame": signs + nibbles + frame_size // 2}[part])
    with pytest.raises(CorruptObjectError, match=f"^corrupt object {victim}"):
        store.get_bytes(victim, size=size)
    dest = tmp_path / "out" / "w.safetensors"
    with pytest.raises((CorruptObjectError, FileCorruptError), match=victim):
        store.materialise(manifest, dest)
    assert not dest.exists()
    (problem,) = store.fsck({"c:w.safetensors": manifest}).problems
    assert problem.oid == victim and problem.problem == "corrupt"


def packed_object(size: int, shift: int = 4, exceptions: int = 0, mode: int = 3, frame: bytes | None = None,
                  frame_size: int | None = None, at=(), values=()) -> bytes:
    """A codec 3 object of ``size`` bytes (size / 2 zero-ish elements), its fields as given."""
    n = size // 2
    frame = frame_of(n) if frame is None else frame
    body = (codecs.PACK_HEADER.pack(len(frame) if frame_size is None else frame_size, exceptions, mode) + frame
            + bytes((n + 1) // 2) + bytes((n + 7) // 8)
            + np.array(at, "<u4").tobytes() + np.array(values, np.uint8).tobytes())
    return codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_ZSTD_PACK, 2, shift, size) + body


def split_object(size: int, frame: bytes, shift: int = 4, group: int = 2) -> bytes:
    return codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_ZSTD_SPLIT, group, shift, size) + frame


def frame_of(nbytes: int, announce: bool = True) -> bytes:
    stream = zstandard.ZstdCompressor(level=1).compressobj(size=nbytes if announce else -1)
    return stream.compress(bytes(nbytes)) + stream.flush()


@pytest.mark.parametrize("raw_of, reason", [
    (lambda: split_object(1000, frame_of(8 << 20)), f"zstd frame claims {8 << 20} bytes, the header 1000"),
    (lambda: split_object(1000, frame_of(8 << 20, announce=False)), "cannot decompress ("),
    (lambda: split_object(1 << 40, frame_of(1000)), f"header claims {1 << 40} bytes, more than any object"),
    (lambda: split_object(10, b"\0" * 100), "wrong size"),
    (lambda: split_object(1001, frame_of(1001)), "wrong size"),  # odd: not whole elements
    (lambda: split_object(1000, frame_of(1000), group=4), "bad split (group 4, shift 4)"),
    (lambda: split_object(1000, frame_of(1000), shift=0), "bad split (group 2, shift 0)"),
    (lambda: split_object(1000, frame_of(1000), shift=9), "bad split (group 2, shift 9)"),
    (lambda: codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_ZSTD, 2, 4, 1000) + frame_of(1000), "bad header"),
    (lambda: codecs.HEADER.pack(codecs.MAGIC, 4, 2, 4, 1000) + frame_of(1000), "unknown codec 4"),
    (lambda: packed_object(1000, shift=5), "bad split (group 2, shift 5)"),
    (lambda: packed_object(1000, exceptions=1), "wrong size"),  # the list is not there
    (lambda: packed_object(1000, mode=8), "bad header"),
    (lambda: packed_object(1000)[:-1], "wrong size"),
    (lambda: packed_object(1000, frame=frame_of(8 << 20)), f"zstd frame claims {8 << 20} bytes, the header 500"),
    (lambda: packed_object(1000, frame_size=len(frame_of(500)) + 1), "wrong size"),
    (lambda: packed_object(1000, exceptions=2, at=[7, 7], values=[1, 2]), "malformed exceptions"),
    (lambda: packed_object(1000, exceptions=2, at=[9, 3], values=[1, 2]), "malformed exceptions"),
    (lambda: packed_object(1000, exceptions=1, at=[500], values=[1]), "malformed exceptions"),
    (lambda: packed_object(1000, exceptions=1, at=[3], values=[3]), "malformed exceptions"),  # the mode
    (lambda: packed_object(1000, exceptions=1, at=[3], values=[8]), "malformed exceptions"),
])
def test_hostile_codec_2_and_3_headers_are_refused_before_allocating(store, raw_of, reason):
    oid = "cd" * 32
    with pytest.raises(CorruptObjectError, match=f"^corrupt object {oid}: " + re.escape(reason)):
        codecs.decode(raw_of(), oid)
    with pytest.raises(CorruptObjectError):
        store.put_raw(oid, raw_of())
    assert list(store.iter_object_ids()) == []


@pytest.mark.parametrize("codec", [codecs.CODEC_ZSTD_SPLIT, codecs.CODEC_ZSTD_PACK])
def test_codec_2_and_3_decoding_is_bounded_by_the_manifest_size(store, codec):
    data = weights_bf16(50000)
    oid = hash_bytes(data)
    raw = codecs.encode(data, 2, "BF16") if codec == codecs.CODEC_ZSTD_PACK else codec_2_object(data)
    assert header_of(raw)[1] == codec
    with pytest.raises(CorruptObjectError, match=f"header claims {len(data)} bytes, the manifest records 4000"):
        codecs.decode(raw, oid, 4000)
    store.put_raw(oid, raw, size=len(data))
    path = store.object_path(oid)
    os.chmod(path, 0o644)
    path.write_bytes(raw + b"\0" * (len(data) + 10))  # longer than any encoding of that size
    with pytest.raises(CorruptObjectError, match=f"^corrupt object {oid}: wrong size$"):
        store.get_bytes(oid, size=len(data))


# -- objects from earlier bgit ----------------------------------------------------------------------

@pytest.fixture
def old_store(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(OLD_STORE / "store", root)
    return Store(root)


def old_manifests() -> dict[str, Manifest]:
    return {p.name.removesuffix(".manifest"): Manifest.from_bytes(p.read_bytes())
            for p in sorted(OLD_STORE.glob("*.manifest"))}


def test_objects_written_before_codec_2_still_read(old_store, tmp_path):
    manifests = old_manifests()
    codecs_seen = {header_of(old_store.read_raw(oid))[1:3] for m in manifests.values() for oid, _ in m.pieces}
    assert {(codecs.CODEC_RAW, 1), (codecs.CODEC_ZSTD, 2)} <= codecs_seen  # raw and byte-grouped bf16
    assert codecs.CODEC_ZSTD_SPLIT not in {c for c, _ in codecs_seen}
    assert old_store.fsck(manifests, all_objects=True).ok
    for name, manifest in manifests.items():
        dest = tmp_path / "out" / name
        old_store.materialise(manifest, dest)
        assert hash_bytes(dest.read_bytes()) == manifest.blake3
        for oid, size in manifest.pieces:
            assert hash_bytes(old_store.get_bytes(oid, size=size)) == oid


def test_the_same_file_gives_the_same_manifest_as_before(old_store, store, tmp_path):
    """Pieces, norms and metadata are part of the format: a re-added file must not change."""
    for name, manifest in old_manifests().items():
        dest = tmp_path / "out" / name
        old_store.materialise(manifest, dest)
        assert store.store_file(dest).to_bytes() == manifest.to_bytes()


def reference_sum_squares(values: np.ndarray) -> float:
    """The norm as bgit has always computed it: float64 squares summed by numpy in blocks
    of 2**18 elements, the block sums added in order."""
    total = 0.0
    for i in range(0, len(values), 1 << 18):
        x = values[i:i + (1 << 18)].astype(np.float64)
        total += float(np.square(x).sum())
    return total


@pytest.mark.parametrize("dtype", ["BF16", "F32", "F16"])
def test_norms_sum_exactly_as_before(dtype):
    from bgit.store import safetensors_split as st

    rng = np.random.default_rng(11)
    x = rng.standard_normal(5 * (1 << 18) + 123) * np.exp(rng.uniform(-20, 5, 5 * (1 << 18) + 123))
    if dtype == "BF16":
        bits = bf16(x)
        values = (bits.astype(np.uint32) << 16).view(np.float32)
        data = bits.tobytes()
    else:
        values = x.astype(np.float32 if dtype == "F32" else np.float16)
        data = values.tobytes()
    assert st.sum_squares(data, dtype) == reference_sum_squares(values)
