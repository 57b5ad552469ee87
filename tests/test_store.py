"""Store objects, manifests and whole-file round trips, on real files in tmp dirs."""

import json
import os
import re

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from bgit.errors import BgitError
from bgit.store import (CorruptObjectError, InvalidObjectIdError, Manifest, ManifestError,
                        ObjectNotFoundError, Store, StoreNotFoundError, hash_bytes, is_manifest)
from bgit.store import safetensors_split
from store_helpers import rollout_rows, write_jsonl, write_mixed_safetensors


@pytest.fixture
def store(tmp_path):
    return Store.init(tmp_path / "repo" / ".git" / "bgit")


def test_put_get_roundtrip_and_idempotent(store):
    data = b"hello payload" * 1000
    oid = store.put_bytes(data)
    assert oid == hash_bytes(data) and len(oid) == 64
    assert store.has(oid) and store.get_bytes(oid) == data
    before = store.stored_bytes()
    assert store.put_bytes(data) == oid
    assert store.stored_bytes() == before
    assert list(store.iter_object_ids()) == [oid]


def test_byte_grouped_object_roundtrip_and_smaller(store):
    rng = np.random.default_rng(1)
    x = (0.02 * rng.standard_normal(1 << 18)).astype(np.float32)
    bf = (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    grouped = store.put_bytes(bf, group=2)
    assert store.get_bytes(grouped) == bf
    other = Store.init(store.root.parent / "other")
    plain = other.put_bytes(bf, group=1)
    assert plain == grouped
    assert store.object_size(grouped) < other.object_size(plain)


def test_errors_are_one_line_bgit_errors(store, tmp_path):
    with pytest.raises(InvalidObjectIdError):
        store.get_bytes("../../etc/passwd")
    with pytest.raises(ObjectNotFoundError, match="^object 0{64} is missing from the store$"):
        store.get_bytes("0" * 64)
    with pytest.raises(StoreNotFoundError):
        Store(tmp_path / "nowhere")
    assert issubclass(CorruptObjectError, BgitError) and issubclass(ManifestError, BgitError)


def test_safetensors_roundtrip_byte_identical(store, tmp_path):
    src = tmp_path / "adapter.safetensors"
    tensors, bf = write_mixed_safetensors(src)
    m = store.store_file(src)
    assert m.kind == "safetensors"
    text = m.to_bytes()
    assert is_manifest(text) and text.startswith(b"bgit-manifest v1\n")
    assert Manifest.from_bytes(text) == m
    dest = tmp_path / "out" / "adapter.safetensors"
    store.materialise(Manifest.from_bytes(text), dest)
    assert dest.read_bytes() == src.read_bytes()
    entries = {t.name: t for t in m.tensors}
    assert set(entries) == {*tensors, "layer.2.bf16"}
    assert entries["layer.2.bf16"].dtype == "BF16" and entries["layer.2.bf16"].shape == (96, 80)
    for name, arr in tensors.items():
        assert entries[name].norm == pytest.approx(np.linalg.norm(arr.astype(np.float64)), rel=1e-12)
    bf_f64 = (bf.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    assert entries["layer.2.bf16"].norm == pytest.approx(np.linalg.norm(bf_f64), rel=1e-12)
    assert m.metadata == {"format": "pt"}
    assert m.object_ids() == {oid for oid, _ in m.pieces}
    assert set().union(*(t.pieces for t in m.tensors)) < m.object_ids()  # plus the header


def test_big_tensor_split_into_pieces(store, tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors_split, "PIECE_SIZE", 1000)  # 1000 % 8 == 0 keeps f64 aligned
    src = tmp_path / "w.safetensors"
    save_file({"w": np.arange(1001, dtype=np.float64)}, str(src))
    m = store.store_file(src)
    (t,) = m.tensors
    assert len(t.pieces) == 9 and t.nbytes == 8008
    store.materialise(m, tmp_path / "copy.safetensors")
    assert (tmp_path / "copy.safetensors").read_bytes() == src.read_bytes()
    assert load_file(str(tmp_path / "copy.safetensors"))["w"][-1] == 1000.0


def test_jsonl_roundtrip_and_small_and_empty_files(store, tmp_path):
    big = tmp_path / "rollout.jsonl"
    write_jsonl(big, rollout_rows(400))
    small = tmp_path / "stim.jsonl"
    small.write_text('{"id": "a", "text": "hi"}\n')
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for src in (big, small, empty):
        m = store.store_file(src)
        dest = tmp_path / "out" / src.name
        store.materialise(m, dest)
        assert dest.read_bytes() == src.read_bytes()
    assert store.store_file(small).kind == "blob"
    assert store.store_file(empty).pieces == ()


def test_malformed_safetensors_is_stored_as_plain_bytes(store, tmp_path):
    src = tmp_path / "fake.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 999]}}).encode()
    src.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    m = store.store_file(src)
    assert m.kind == "blob"
    store.materialise(m, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == src.read_bytes()


def new_bytes(store, before_ids):
    return sum(store.object_size(o) for o in set(store.iter_object_ids()) - before_ids)


def test_same_file_twice_adds_nothing(store, tmp_path):
    src = tmp_path / "a.safetensors"
    write_mixed_safetensors(src)
    m1 = store.store_file(src)
    before = set(store.iter_object_ids())
    assert store.store_file(src) == m1
    assert new_bytes(store, before) == 0


def test_jsonl_append_ten_percent_stores_little(store, tmp_path):
    rows = rollout_rows(6600, seed=3)  # ~34 MB: the rewritten tail chunk (~320 KiB avg) stays small
    src = tmp_path / "rollout.jsonl"
    write_jsonl(src, rows[:6000])
    store.store_file(src)
    before = set(store.iter_object_ids())
    raw_before = src.stat().st_size
    write_jsonl(src, rows)
    m = store.store_file(src)
    added_raw = sum(size for oid, size in m.pieces if oid not in before)
    assert added_raw <= 0.15 * raw_before, added_raw / raw_before
    assert new_bytes(store, before) <= 0.15 * raw_before
    store.materialise(m, tmp_path / "back.jsonl")
    assert (tmp_path / "back.jsonl").read_bytes() == src.read_bytes()


def test_one_changed_tensor_stores_only_that_tensor(store, tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"t{i}": rng.standard_normal((128, 64)).astype(np.float32) for i in range(4)}
    src = tmp_path / "a.safetensors"
    save_file(tensors, str(src))
    m1 = store.store_file(src)
    before = set(store.iter_object_ids())
    tensors["t2"] = tensors["t2"] + 1
    save_file(tensors, str(src))
    m2 = store.store_file(src)
    new_ids = set(store.iter_object_ids()) - before
    changed = {t.name for t in m2.tensors if t.pieces != {x.name: x for x in m1.tensors}[t.name].pieces}
    assert changed == {"t2"}
    assert new_ids == set(next(t for t in m2.tensors if t.name == "t2").pieces)


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d.update(kind="tarball"), "kind must be one of"),
    (lambda d: d["pieces"][0].__setitem__(0, "../../etc/passwd"), "must be 64 lowercase hex digits"),
    (lambda d: d.update(size=d["size"] + 1), "piece sizes do not add up"),
    (lambda d: d["pieces"][0].__setitem__(1, -5), "pieces[0] size must be an integer"),
    (lambda d: d["tensors"][0].update(offsets=[0, 3]), "pieces do not match its offsets"),
    (lambda d: d.update(blake3=123), "blake3 must be 64"),
])
def test_malicious_manifests_rejected(store, tmp_path, mutate, reason):
    src = tmp_path / "a.safetensors"
    write_mixed_safetensors(src)
    doc = json.loads(store.store_file(src).to_bytes().split(b"\n", 1)[1])
    mutate(doc)
    with pytest.raises(ManifestError, match="^invalid manifest: .*" + re.escape(reason)) as e:
        Manifest.from_bytes(b"bgit-manifest v1\n" + json.dumps(doc).encode())
    assert "\n" not in str(e.value)


def test_garbage_manifests_rejected():
    assert not is_manifest(b"version https://git-lfs.github.com/spec/v1\n")
    for bad in (b"hello", b"bgit-manifest v1\n{not json", b"bgit-manifest v1\n[1, 2]",
                b"bgit-manifest v1\n\xff\xfe"):
        with pytest.raises(ManifestError):
            Manifest.from_bytes(bad)


def test_put_raw_verifies(store, tmp_path):
    oid = store.put_bytes(b"x" * 5000)
    raw = store.read_raw(oid)
    other = Store.init(tmp_path / "remote-copy")
    other.put_raw(oid, raw)
    assert other.get_bytes(oid) == b"x" * 5000
    bad = bytearray(raw)
    bad[-1] ^= 0xFF
    third = Store.init(tmp_path / "third")
    with pytest.raises(CorruptObjectError, match=oid):
        third.put_raw(oid, bytes(bad))
    with pytest.raises(CorruptObjectError, match="0" * 64):
        third.put_raw("0" * 64, raw)  # valid object under the wrong id
    assert not third.has(oid) and list(third.iter_object_ids()) == []
    assert os.listdir(third.tmp_dir) == []


def test_manifest_shape_must_match_offsets(store, tmp_path):
    src = tmp_path / "a.safetensors"
    write_mixed_safetensors(src)
    doc = json.loads(store.store_file(src).to_bytes().split(b"\n", 1)[1])
    doc["tensors"][0]["shape"] = [1, 2, 3]
    with pytest.raises(ManifestError, match="shape and dtype do not match its offsets"):
        Manifest.from_bytes(b"bgit-manifest v1\n" + json.dumps(doc).encode())


def test_edit_in_the_middle_rewrites_few_chunks(store, tmp_path):
    rows = rollout_rows(3000, seed=5)
    src = tmp_path / "rollout.jsonl"
    write_jsonl(src, rows)
    m1 = store.store_file(src)
    rows[1500] = rows[1500].replace('"traj": 0', '"traj": 1')
    rows.insert(700, rows[10])
    write_jsonl(src, rows)
    m2 = store.store_file(src)
    new = [size for oid, size in m2.pieces if oid not in m1.object_ids()]
    assert len(new) <= 4 and sum(new) <= 0.15 * m2.size, (len(new), sum(new) / m2.size)


def test_binary_cdc_survives_an_insertion(store, tmp_path):
    data = np.random.default_rng(7).integers(0, 256, 6 << 20, dtype=np.uint8).tobytes()
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    m1 = store.store_file(src)
    assert m1.kind == "chunks" and len(m1.pieces) > 4
    src.write_bytes(data[:3_000_000] + b"inserted bytes" + data[3_000_000:])
    m2 = store.store_file(src)
    new = sum(size for oid, size in m2.pieces if oid not in m1.object_ids())
    assert new <= 0.25 * m2.size, new / m2.size
    store.materialise(m2, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_text_cut_candidates_depend_only_on_each_line(monkeypatch):
    from bgit.store import chunking
    monkeypatch.setattr(chunking, "BLOCK", 1 << 16)  # many batches, some lines longer than one
    rng = np.random.default_rng(0)
    lines = [b"x" * 200_000 + b"\n"] + [b'{"i": %d, "s": "%s"}\n' % (i, b"y" * int(rng.integers(0, 3000)))
                                        for i in range(3000)] + [b"z" * 150_000 + b"\n", b"no newline"]
    buf = np.frombuffer(b"".join(lines), dtype=np.uint8)
    cands = chunking._text_candidates(buf)
    assert cands == sorted(set(cands)) and len(cands) > 10
    ends = np.flatnonzero(buf == 10) + 1
    starts = np.concatenate([[0], ends[:-1]])
    one_by_one = [int(e) for s, e in zip(starts, ends)
                  if chunking._text_candidates(buf[s:e].copy()) == [e - s]]
    assert cands == one_by_one


def test_vectorised_gear_hash_equals_the_rolling_definition():
    from bgit.store import chunking
    data = np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8)
    fast = chunking._gear_hash(data)
    h = 0
    for i, byte in enumerate(data):
        h = ((h << 1) + int(chunking.GEAR[byte])) & 0xFFFFFFFF  # FastCDC's rolling update
        if i >= chunking.WINDOW - 1:
            assert int(fast[i]) == h, i


@pytest.mark.parametrize("size", [1, 4095, 4096, 3 * 8192 + 17, 5 * 8192])
def test_direct_writer_roundtrip_sizes(store, tmp_path, monkeypatch, size):
    from bgit.store import files, writers
    monkeypatch.setattr(files, "DIRECT_MIN", 0)
    monkeypatch.setattr(writers, "STAGE", 8192)  # many stage swaps and a padded tail
    src = tmp_path / "payload.bin"
    src.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    m = store.store_file(src)
    store.materialise(m, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    try:  # when this filesystem supports O_DIRECT, the direct path itself was exercised
        w = writers.DirectWriter(tmp_path / "probe")
    except OSError:
        pytest.skip("no O_DIRECT here; the buffered fallback was tested")
    w.write(b"x" * 5000)
    w.finish()
    w.close()
    assert (tmp_path / "probe").read_bytes() == b"x" * 5000


def test_direct_writer_writes_pooled_buffers_in_place_and_others_by_copy(tmp_path, monkeypatch):
    """Pieces decoded into BufferPool buffers go to disk from there (only the blocks where
    pieces meet are copied); other buffers are copied through the stages; mixed in any order."""
    from bgit.store import writers
    monkeypatch.setattr(writers, "STAGE", 8192)
    monkeypatch.setattr(writers, "DIRECT_WRITE_MIN", 0)
    copies = []
    real_copy = writers.DirectWriter._copy
    monkeypatch.setattr(writers.DirectWriter, "_copy", lambda self, v: (copies.append(len(v)), real_copy(self, v)))
    try:
        w = writers.DirectWriter(tmp_path / "out.bin")
    except OSError:
        pytest.skip("no O_DIRECT here")
    rng = np.random.default_rng(5)
    sizes = [8 + 4000, 70_000, 3, 5 * 4096, 12_345, 4096 * 2 + 1, 100_000, 1]
    pool, expected, released, offset = writers.BufferPool(len(sizes)), [], [], 0
    for i, size in enumerate(sizes):
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        expected.append(data)
        if i % 3 == 2:  # a plain bytes object: copied
            w.write(data)
        else:
            buf, view = pool.take(offset, size)
            view[:] = data
            w.write(view, release=lambda b=buf, i=i: (released.append(i), pool.give(b)))
        offset += size
    w.finish()
    w.close()
    assert (tmp_path / "out.bin").read_bytes() == b"".join(expected)
    assert sorted(released) == [i for i in range(len(sizes)) if i % 3 != 2]
    pooled = sum(s for i, s in enumerate(sizes) if i % 3 != 2)
    assert sum(copies) < len(b"".join(expected)) - pooled + 3 * 2 * 4096  # pooled bytes mostly not copied
