"""fsck, gc, crash safety and the writer lock of the store, with real processes."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bgit.store import CorruptObjectError, FileCorruptError, LockedError, Store
from store_helpers import rollout_rows, write_jsonl, write_mixed_safetensors

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    return Store.init(tmp_path / ".git" / "bgit")


def flip_byte(path: Path, offset: int = -1):
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_detected_by_get_materialise_and_fsck(store, tmp_path):
    src = tmp_path / "adapter.safetensors"
    write_mixed_safetensors(src)
    m = store.store_file(src)
    other = tmp_path / "stim.jsonl"
    other.write_text('{"id": "1", "text": "a"}\n')
    m_other = store.store_file(other)
    bad = m.tensors[0].pieces[0]
    flip_byte(store.object_path(bad))
    with pytest.raises(CorruptObjectError, match=f"^corrupt object {bad}: "):
        store.get_bytes(bad)
    dest = tmp_path / "work" / "adapter.safetensors"
    with pytest.raises(CorruptObjectError, match=bad):
        store.materialise(m, dest)
    assert not dest.exists() and os.listdir(dest.parent) == []  # no temp file left behind
    report = store.fsck({"c1:adapter/adapter_model.safetensors": m,
                         "c2:adapter/adapter_model.safetensors": m, "c1:stim.jsonl": m_other})
    assert not report.ok and report.objects_checked == len(m.object_ids() | m_other.object_ids())
    (problem,) = report.problems
    assert problem.oid == bad and problem.problem == "corrupt"
    assert problem.labels == ("c1:adapter/adapter_model.safetensors", "c2:adapter/adapter_model.safetensors")
    assert problem.message.startswith(f"object {bad} is corrupt (")
    assert problem.message.endswith("needed by c1:adapter/adapter_model.safetensors, "
                                    "c2:adapter/adapter_model.safetensors")


def test_fsck_reports_missing_and_unreferenced_corruption(store, tmp_path):
    src = tmp_path / "d.jsonl"
    write_jsonl(src, rollout_rows(300))
    m = store.store_file(src)
    gone = next(iter(m.object_ids()))
    os.unlink(store.object_path(gone))
    stray = store.put_bytes(b"orphan" * 100)
    flip_byte(store.object_path(stray), 20)
    report = store.fsck({"HEAD:d.jsonl": m}, all_objects=True)
    by_oid = {p.oid: p for p in report.problems}
    assert by_oid[gone].problem == "missing" and by_oid[gone].labels == ("HEAD:d.jsonl",)
    assert by_oid[stray].problem == "corrupt" and by_oid[stray].labels == ("(unreferenced)",)
    assert len(report.problems) == 2


def test_materialise_rejects_manifest_whose_hash_does_not_match(store, tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc" * 100)
    m = store.store_file(src)
    from dataclasses import replace
    forged = replace(m, blake3="f" * 64)
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"keep me")
    with pytest.raises(FileCorruptError, match="does not match manifest f{64}"):
        store.materialise(forged, dest)
    assert dest.read_bytes() == b"keep me"


def test_gc_removes_unreachable_keeps_reachable(store, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    write_mixed_safetensors(a, seed=1)
    write_mixed_safetensors(b, seed=2)
    keep, drop = store.store_file(a), store.store_file(b)
    only_drop = drop.object_ids() - keep.object_ids()
    assert only_drop
    leftover = store.tmp_dir / ("12345-" + "deadbeef" * 4)
    leftover.write_bytes(b"half an object")
    (store.tmp_dir / "not-the-stores").mkdir()       # another layer's directory: never the store's to delete
    (store.tmp_dir / "not-the-stores" / "f").write_bytes(b"x")
    young = store.gc(keep.object_ids(), grace_seconds=3600)
    assert young.removed_objects == 0 and young.kept_recent == len(only_drop)
    assert young.removed_tmp_files == 0
    report = store.gc(keep.object_ids(), grace_seconds=3600, now=time.time() + 7200)
    assert report.removed_objects == len(only_drop) and report.removed_tmp_files == 1
    assert not leftover.exists() and (store.tmp_dir / "not-the-stores" / "f").is_file()
    assert report.removed_bytes > 0 and report.kept_objects == len(keep.object_ids())
    assert set(store.iter_object_ids()) == keep.object_ids()
    assert store.fsck({"keep": keep}).ok
    store.materialise(keep, tmp_path / "again.safetensors")
    assert (tmp_path / "again.safetensors").read_bytes() == a.read_bytes()


def test_put_of_existing_object_refreshes_its_age(store):
    oid = store.put_bytes(b"reused" * 10)
    old = time.time() - 10_000
    os.utime(store.object_path(oid), (old, old))
    store.put_bytes(b"reused" * 10)
    assert store.gc(set(), grace_seconds=3600).removed_objects == 0


WRITER = textwrap.dedent("""
    import sys
    from bgit.store import Store
    store = Store(sys.argv[1])
    print("start", flush=True)
    while True:
        store.store_file(sys.argv[2])
        store.gc(set(), grace_seconds=0)  # delete again so every pass writes objects anew
""")


def test_sigkill_mid_write_leaves_no_visible_half_object(store, tmp_path):
    big = tmp_path / "big.bin"
    rng = np.random.default_rng(0)
    big.write_bytes(rng.integers(0, 4, 24 << 20, dtype=np.uint8).tobytes())
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store.root), str(big)],
                            cwd=REPO, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == b"start"
        deadline = time.time() + 30
        while time.time() < deadline and not os.listdir(store.tmp_dir):
            time.sleep(0.002)
        assert os.listdir(store.tmp_dir), "writer never started an object"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    report = store.fsck({}, all_objects=True)
    assert report.ok, [p.message for p in report.problems]
    for oid in store.iter_object_ids():
        store.verify(oid)
    store.gc(set(), grace_seconds=0)
    assert os.listdir(store.tmp_dir) == []
    m = store.store_file(big)  # the store still works after the crash
    store.materialise(m, tmp_path / "big.out")
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()


HOLDER = textwrap.dedent("""
    import sys, time
    from bgit.store import Store
    with Store(sys.argv[1]).lock("bgit bake"):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_second_locker_gets_locked_error_and_dead_holder_is_taken_over(store):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.root)], cwd=REPO,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == b"locked"
        with pytest.raises(LockedError) as e:
            with store.lock("bgit commit"):
                pass
        assert re.fullmatch(rf"repository is locked by pid {proc.pid} \(bgit bake\) since "
                            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", str(e.value))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with store.lock("bgit commit"):
        with store.lock("nested in the same process"):
            pass
