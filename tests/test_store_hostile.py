"""The payload store under hostile input and faults: object headers and zstd frames that
lie about their size, manifests that do not fit together or disagree with the bytes they
describe, and directory fsyncs that fail. Real files, real repositories, the real CLI."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import replace

import pygit2
import pytest
import zstandard
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.remote import add_remote, push
from bgit.remote.known import KnownObjects
from bgit.remote.stores import DirectoryStoreRemote, StoreRemoteError
from bgit.repo import Repository
from bgit.store import CorruptObjectError, Manifest, ManifestError, Store, codecs, objects
from bgit.store.maintenance import check_manifest_content
from store_helpers import write_mixed_safetensors

FILE = "adapter.safetensors"


@pytest.fixture
def store(tmp_path):
    return Store.init(tmp_path / ".git" / "bgit")


def zstd_object(claimed: int, frame: bytes) -> bytes:
    return codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_ZSTD, 1, 0, claimed) + frame


def zeros_frame(nbytes: int, announce: bool = True) -> bytes:
    stream = zstandard.ZstdCompressor(level=1).compressobj(size=nbytes if announce else -1)
    return stream.compress(bytes(nbytes)) + stream.flush()


# -- object headers and frames that lie -----------------------------------------------------------

def test_decode_refuses_sizes_other_than_the_manifest_records(store):
    data = b"honest bytes " * 1000
    oid = store.put_bytes(data)
    raw = store.read_raw(oid)
    assert bytes(codecs.decode(raw, oid, len(data))) == data
    with pytest.raises(CorruptObjectError, match=rf"^corrupt object {oid}: header claims 13000 bytes, "
                                                 r"the manifest records 12999$"):
        codecs.decode(raw, oid, len(data) - 1)
    with pytest.raises(CorruptObjectError, match=rf"^corrupt object {oid}: header claims"):
        store.get_buffer(oid, size=len(data) + 1)
    with pytest.raises(CorruptObjectError, match="header claims 13000 bytes, the manifest records 5"):
        Store.init(store.root.parent / "other").put_raw(oid, raw, size=5)


@pytest.mark.parametrize("raw_of, reason", [
    # a header claiming 1 TiB with no manifest at hand: more than bgit ever writes
    (lambda: zstd_object(1 << 40, zeros_frame(1000)),
     f"header claims {1 << 40} bytes, more than any object bgit writes"),
    # the header says 1000, the zstd frame announces 8 MiB: zstd would allocate the 8 MiB
    (lambda: zstd_object(1000, zeros_frame(8 << 20)), f"zstd frame claims {8 << 20} bytes, the header 1000"),
    # nothing announces 8 MiB: decompression stops at the header's 1000 bytes
    (lambda: zstd_object(1000, zeros_frame(8 << 20, announce=False)), "cannot decompress ("),
    # more on disk than the header's size can take (bgit stores raw when zstd does not shrink)
    (lambda: zstd_object(10, b"\0" * 100), "wrong size"),
    (lambda: codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_RAW, 1, 0, 10) + b"x" * 9, "wrong size"),
    (lambda: codecs.HEADER.pack(codecs.MAGIC, 7, 1, 0, 10) + b"x" * 10,
     "unknown codec 7 (this bgit reads codecs 0-3; if a newer bgit wrote it, upgrade to read it)"),
    (lambda: b"BGO1\0", "truncated header"),
])
def test_lying_objects_are_refused_before_allocating(store, raw_of, reason):
    oid = "ab" * 32
    with pytest.raises(CorruptObjectError, match=f"^corrupt object {oid}: " + re.escape(reason)):
        codecs.decode(raw_of(), oid)
    with pytest.raises(CorruptObjectError):
        store.put_raw(oid, raw_of())
    assert list(store.iter_object_ids()) == [] and os.listdir(store.tmp_dir) == []


def test_materialise_refuses_an_object_of_another_size_and_leaves_dest(store, tmp_path):
    src = tmp_path / FILE
    write_mixed_safetensors(src)
    manifest = store.store_file(src)
    victim, size = manifest.pieces[1]
    path = store.object_path(victim)
    os.chmod(path, 0o644)
    path.write_bytes(zstd_object(1 << 30, zeros_frame(1 << 20)))  # claims 1 GiB
    dest = tmp_path / "out" / FILE
    dest.parent.mkdir()
    dest.write_bytes(b"keep me")
    with pytest.raises(CorruptObjectError, match=f"^corrupt object {victim}: header claims {1 << 30} bytes, "
                                                 f"the manifest records {size}$"):
        store.materialise(manifest, dest)
    assert dest.read_bytes() == b"keep me" and os.listdir(dest.parent) == [FILE]
    (problem,) = store.fsck({"c1:" + FILE: manifest}).problems
    assert problem.oid == victim and problem.detail.startswith("header claims")


# -- manifests that do not fit together -----------------------------------------------------------

def manifest_doc(store, tmp_path) -> dict:
    src = tmp_path / FILE
    write_mixed_safetensors(src)
    return json.loads(store.store_file(src).to_bytes().split(b"\n", 1)[1])


def _swap_first_two_tensor_positions(d):
    a, b = d["tensors"][0], d["tensors"][1]
    a["pieces"], b["pieces"] = b["pieces"], a["pieces"]


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d.update(size=-1), "size must be an integer >= 0"),
    (lambda d: d["pieces"][1].__setitem__(1, 0), "pieces[1] size must be an integer >= 1"),
    (lambda d: d["pieces"].append(["cd" * 32, 200 << 20]), "pieces[5] size is larger than any object bgit writes"),
    (lambda d: d["tensors"][0].update(dtype="Q99"), "tensors[0] has unknown dtype 'Q99'"),
    (lambda d: d["tensors"][1].update(name=d["tensors"][0]["name"]), "appears twice"),
    (lambda d: d["tensors"][-1].update(offsets=[o + 8 for o in d["tensors"][-1]["offsets"]]),
     "offsets lie outside the file"),
    (lambda d: d["tensors"][1].update(offsets=[o - 8 for o in d["tensors"][1]["offsets"]]),
     "pieces are not where its offsets point"),
    (_swap_first_two_tensor_positions, "pieces do not match its offsets"),
    (lambda d: d["tensors"][0].update(pieces=[]), "pieces do not match its offsets"),
    (lambda d: d.update(pieces=[]) or d.update(size=0), "a safetensors file starts with its header piece"),
])
def test_impossible_manifests_rejected(store, tmp_path, mutate, reason):
    doc = manifest_doc(store, tmp_path)
    mutate(doc)
    with pytest.raises(ManifestError, match="^invalid manifest: .*" + re.escape(reason)):
        Manifest.from_bytes(b"bgit-manifest v1\n" + json.dumps(doc).encode())


def test_overlapping_tensors_rejected(store, tmp_path):
    doc = manifest_doc(store, tmp_path)
    header_size = doc["pieces"][0][1]
    sizes = dict(doc["pieces"])
    first, second = sorted(doc["tensors"], key=lambda t: t["offsets"][0])[:2]
    # A fake tensor over the first one's bytes: valid alone, overlapping as a whole.
    doc["tensors"].append({**first, "name": "shadow"})
    assert sum(sizes[p] for p in first["pieces"]) == first["offsets"][1] - first["offsets"][0]
    assert header_size > 8 and second["offsets"][0] >= first["offsets"][1]
    with pytest.raises(ManifestError, match=r"^invalid manifest: tensors\[\d\] overlaps another tensor$"):
        Manifest.from_bytes(b"bgit-manifest v1\n" + json.dumps(doc).encode())


# -- manifests that disagree with the bytes (fsck) -------------------------------------------------

def forged(manifest: Manifest, tensor: str, **changes) -> Manifest:
    tensors = tuple(replace(t, **changes) if t.name == tensor else t for t in manifest.tensors)
    return Manifest.from_bytes(replace(manifest, tensors=tensors).to_bytes())  # still self-consistent


def test_check_manifest_content_compares_every_tensor_with_the_header(store, tmp_path):
    src = tmp_path / FILE
    write_mixed_safetensors(src)
    m = store.store_file(src)
    assert check_manifest_content(store, m) is None
    bf = next(t for t in m.tensors if t.name == "layer.2.bf16")
    assert check_manifest_content(store, forged(m, "layer.2.bf16", dtype="F16")) == (
        f"tensor 'layer.2.bf16' is F16 [96, 80] at bytes {bf.offsets[0]}-{bf.offsets[1]} in the manifest "
        f"but BF16 [96, 80] at bytes {bf.offsets[0]}-{bf.offsets[1]} in the file's header")
    assert "is BF16 [80, 96]" in check_manifest_content(store, forged(m, "layer.2.bf16", shape=(80, 96)))
    assert check_manifest_content(store, forged(m, "layer.2.bf16", name="renamed")) == (
        "tensor 'renamed' is not in the file's header")
    assert check_manifest_content(store, replace(m, metadata={"format": "np"})) == (
        "its metadata differs from the file's header")
    assert check_manifest_content(store, replace(m, tensors=m.tensors[:-1])).endswith(
        "of the file's header is not in the manifest")
    report = store.fsck({"c1:" + FILE: forged(m, "layer.2.bf16", dtype="F16"), "c2:" + FILE: m})
    assert not report.ok and report.problems == []
    assert [(p.label, p.reason.split(" is ")[0]) for p in report.manifest_problems] == [
        ("c1:" + FILE, "tensor 'layer.2.bf16'")]


def test_bgit_fsck_reports_a_manifest_that_disagrees_with_its_bytes(tmp_path, monkeypatch):
    repo = Repository.init(tmp_path / "r")
    write_mixed_safetensors(repo.root / FILE)
    original = (repo.root / FILE).read_bytes()
    repo.add(all=True)
    good = repo.commit("adapter")
    m = repo.read_manifest("HEAD", FILE)
    lie = forged(m, "layer.2.bf16", dtype="F16", shape=(80, 96))
    tree = repo.git.TreeBuilder(repo.head_commit().tree)
    tree.insert(FILE, repo.git.create_blob(lie.to_bytes()), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("Mallory", "m@example.com")
    bad = repo.git.create_commit("refs/heads/evil", sig, sig, "lie", tree.write(), [repo.head_commit().id])
    monkeypatch.chdir(repo.root)

    result = CliRunner().invoke(cli, ["fsck"])
    assert result.exit_code == 1
    bf = next(t for t in m.tensors if t.name == "layer.2.bf16")
    span = f"at bytes {bf.offsets[0]}-{bf.offsets[1]}"
    assert result.output == (f"corrupted manifest at {str(bad)[:8]}:{FILE}: tensor 'layer.2.bf16' is F16 "
                             f"[80, 96] {span} in the manifest but BF16 [96, 80] {span} in the file's header\n")
    report = json.loads(CliRunner().invoke(cli, ["fsck", "--json"]).output)
    assert report["ok"] is False and len(report["problems"]) == 1
    # Nothing lost: the honest commit still checks out byte for byte, and dropping the lie heals fsck.
    repo.git.references.delete("refs/heads/evil")
    assert CliRunner().invoke(cli, ["fsck"]).exit_code == 0
    (repo.root / FILE).unlink()
    repo.checkout(good, force=True)
    assert (repo.root / FILE).read_bytes() == original


# -- directory fsyncs that fail -----------------------------------------------------------------------

@pytest.fixture
def failing_dir_fsync(monkeypatch):
    """os.fsync fails with EIO on directories (a dying disk); files still sync."""
    real = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_failing_directory_fsync_is_an_error_in_the_store(store, tmp_path, failing_dir_fsync):
    with pytest.raises(OSError, match="Input/output error"):
        store.put_bytes(b"must be durable" * 10)
    src = tmp_path / FILE
    write_mixed_safetensors(src)
    with pytest.raises(OSError, match="Input/output error"):
        store.store_file(src)
    with pytest.raises(FileNotFoundError):  # a directory that cannot even be opened
        objects.fsync_dir(tmp_path / "no-such-dir")


def test_a_failing_directory_fsync_is_an_error_in_remotes(tmp_path, failing_dir_fsync):
    remote = DirectoryStoreRemote(tmp_path / "remote", create=True)
    remote.check()
    source = tmp_path / "object"
    source.write_bytes(codecs.encode(b"payload" * 100))
    oid = "ef" * 32
    message = f"^cannot write to payload store {re.escape(str(tmp_path / 'remote'))}: Input/output error$"
    with pytest.raises(StoreRemoteError, match=message):
        remote.put_from_file(oid, source)
    with pytest.raises(StoreRemoteError, match=message):
        remote.put("cd" * 32, source.read_bytes())
    with pytest.raises(OSError, match="Input/output error"):
        with KnownObjects(tmp_path / "bgit", "origin", str(tmp_path / "remote")) as known:
            known.add([oid])


def test_push_with_a_failing_directory_fsync_moves_no_ref(tmp_path, monkeypatch):
    repo = Repository.init(tmp_path / "a")
    write_mixed_safetensors(repo.root / FILE)
    repo.add(all=True)
    repo.commit("adapter")
    add_remote(repo.git, "origin", str(tmp_path / "origin.git"))
    pygit2.init_repository(str(tmp_path / "origin.git"), bare=True, initial_head="main")
    monkeypatch.chdir(repo.root)
    real = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode) and "bgit-objects" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 1 and result.output == (
        f"Error: cannot write to payload store {tmp_path / 'origin.git' / 'bgit-objects'}: "
        f"Input/output error\n")
    assert "refs/heads/main" not in pygit2.Repository(str(tmp_path / "origin.git")).references
    assert push(repo).updated  # the disk recovered: the same push goes through
