"""Remotes end to end, for each kind: a path remote (directory store), a git daemon on
127.0.0.1 (directory store), and S3 on a moto server (graph on a path)."""

from __future__ import annotations

import filecmp
import shutil
import uuid
from pathlib import Path

import pygit2
import pytest
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.remote import (PushRejectedError, RemoteObjectCorruptError, add_remote, clone, fetch,
                         fetch_missing, install_fetcher, pull, push)
from bgit.remote import transfer
from bgit.remote.config import get_remote, store_url_of
from bgit.remote.stores import open_store_remote
from bgit.repo import Repository
from bgit.store import codecs
from bgit.store.objects import hash_bytes

from remote_helpers import (CountingStore, GitDaemon, MotoS3, adapter_tensors, free_port,
                            make_bake, replace_remote_object, set_env)

ADAPTER = "adapter/adapter_model.safetensors"
ROLLOUT = "targets/x/rollout.jsonl"
KINDS = ["path", "git-daemon", "s3"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("daemon")
    d = GitDaemon(base)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoS3()
    server.create_bucket("bakes")
    yield server
    server.stop()


@pytest.fixture(params=KINDS)
def origin(request, tmp_path, monkeypatch):
    """(url, store_url or None) of a fresh, empty remote of the given kind."""
    kind = request.param
    if kind == "path":
        return kind, str(tmp_path / "origin.git"), None  # push creates it as a bare repo
    if kind == "git-daemon":
        d = request.getfixturevalue("daemon")
        name = f"r{uuid.uuid4().hex[:8]}.git"
        pygit2.init_repository(str(d.base / name), bare=True, initial_head="main")
        return kind, d.url(name), str(tmp_path / "store")
    server = request.getfixturevalue("moto")
    set_env(monkeypatch, server.env)
    return kind, str(tmp_path / "origin.git"), f"s3://bakes/{uuid.uuid4().hex[:8]}"


def new_repo(path: Path, seed: int = 1) -> Repository:
    repo = Repository.init(path)
    make_bake(repo.root, seed)
    repo.add(all=True)
    repo.commit(f"bake {seed}")
    return repo


def store_of(repo: Repository, name: str = "origin") -> CountingStore:
    return CountingStore(open_store_remote(store_url_of(get_remote(repo.git, name)), create=True))


def published(tmp_path, origin) -> Repository:
    kind, url, store_url = origin
    repo = new_repo(tmp_path / "a")
    add_remote(repo.git, "origin", url, store_url)
    push(repo)
    return repo


def payload_ids(repo: Repository, ref: str, path: str) -> set[str]:
    return repo.read_manifest(ref, path).object_ids()


def test_clone_then_checkout_is_byte_identical(tmp_path, origin):
    kind, url, store_url = origin
    a = published(tmp_path, origin)
    first = tmp_path / "first.safetensors"
    shutil.copy(a.root / ADAPTER, first)
    make_bake(a.root, 2)
    a.add(all=True)
    a.commit("bake 2")
    a.git.references.create("refs/tags/v1", a.head_commit().id)
    push(a, tags=True)

    b = clone(url, tmp_path / "b", store_url)
    assert b.git.references["refs/tags/v1"].target == a.head_commit().id
    assert filecmp.cmp(a.root / ADAPTER, b.root / ADAPTER, shallow=False)
    assert filecmp.cmp(a.root / ROLLOUT, b.root / ROLLOUT, shallow=False)
    # The clone fetched only what HEAD needs: the first bake's adapter is still remote.
    old_only = payload_ids(a, "HEAD~1", ADAPTER) - payload_ids(a, "HEAD", ADAPTER)
    assert old_only and not any(b.store.has(oid) for oid in old_only)
    install_fetcher(b)
    b.checkout("HEAD~1")
    assert filecmp.cmp(first, b.root / ADAPTER, shallow=False)
    assert all(b.store.has(oid) for oid in old_only)


def test_repush_sends_nothing_and_a_one_tensor_change_sends_no_dataset(tmp_path, origin):
    a = published(tmp_path, origin)
    counting = store_of(a)
    again = push(a, store_remote=counting)
    assert again.up_to_date == ["refs/heads/main"] and counting.bytes_put == 0 and counting.has_calls == 0

    tensors = adapter_tensors(1)
    name = sorted(tensors)[3]
    tensors[name] = tensors[name] ^ 1  # flip the lowest bit of every element of one tensor
    make_bake(a.root, 1, tensors=tensors)
    a.add(all=True)
    a.commit("retrain one tensor")
    result = push(a, store_remote=counting)
    assert result.updated and counting.puts >= 1
    assert not set(counting.put_oids) & payload_ids(a, "HEAD", ROLLOUT)
    assert set(counting.put_oids) <= payload_ids(a, "HEAD", ADAPTER) - payload_ids(a, "HEAD~1", ADAPTER)
    assert counting.bytes_put < 2 * tensors[name].nbytes
    assert counting.has_calls <= 1  # known objects are not asked about again

    counting = store_of(a)
    assert push(a, store_remote=counting).updated == [] and counting.bytes_put == 0


def test_small_objects_travel_in_one_pack_and_come_back_in_one_read(tmp_path, origin):
    kind, url, store_url = origin
    a = Repository.init(tmp_path / "a")
    tensors = adapter_tensors(1)
    tensors["big.weight"] = tensors[sorted(tensors)[0]].repeat(256, axis=0)  # 4 MiB: alone
    make_bake(a.root, 1, tensors=tensors)
    a.add(all=True)
    a.commit("bake 1")
    add_remote(a.git, "origin", url, store_url)
    needed = payload_ids(a, "HEAD", ADAPTER) | payload_ids(a, "HEAD", ROLLOUT)
    big = {oid for oid, size in a.read_manifest("HEAD", ADAPTER).pieces if size >= transfer.LOOSE_MIN}
    assert len(big) == 1 and len(needed) >= 40

    sending = store_of(a)
    push(a, store_remote=sending)
    assert sending.puts == 2 and sorted(sending.put_oids) == sorted(needed)  # a pack, the big one
    remote = open_store_remote(store_url_of(get_remote(a.git, "origin")))
    assert set(remote._list_loose()) == big
    assert len(remote._list_files("packs")) == 2 and set(remote.list()) == needed

    b = clone(url, tmp_path / "b", store_url, checkout=False)
    reading = CountingStore(open_store_remote(remote.url))
    assert fetch_missing(b, "origin/main", store_remote=reading) == len(needed)
    assert reading.gets == 2  # one range for the pack's objects, one for the big one
    b.checkout("origin/main", force=True)
    assert filecmp.cmp(a.root / ADAPTER, b.root / ADAPTER, shallow=False)
    assert filecmp.cmp(a.root / ROLLOUT, b.root / ROLLOUT, shallow=False)
    assert b.fsck().ok


def test_each_pack_index_is_read_from_the_remote_once(tmp_path, origin):
    kind, url, store_url = origin
    a = published(tmp_path, origin)
    make_bake(a.root, 2)
    a.add(all=True)
    a.commit("bake 2")
    push(a)  # a second pack
    b = clone(url, tmp_path / "b", store_url)  # reads both indexes, keeps copies
    cached = sorted((b.bgit_dir / "pack-indexes").iterdir())
    assert len(cached) == 2

    reading = store_of(b)
    assert fetch_missing(b, "origin/main~1", store_remote=reading) > 0
    assert reading.files_read and not [f for f in reading.files_read if f.endswith(".idx")]

    cached[0].write_bytes(cached[0].read_bytes()[:-2] + b"\n")  # a damaged copy is not trusted
    reading = store_of(b)
    reading.index_cache = b.bgit_dir / "pack-indexes"
    assert set(reading.packed()) >= payload_ids(a, "HEAD~1", ADAPTER)
    assert [f for f in reading.files_read if f.endswith(".idx")] == [f"packs/{cached[0].name}"]
    assert cached[0].read_bytes() == reading.inner._read_file(f"packs/{cached[0].name}", 0, 1 << 20)


def test_a_store_of_loose_objects_from_before_packs_still_clones(tmp_path, origin):
    kind, url, store_url = origin
    a = published(tmp_path, origin)
    remote = open_store_remote(store_url_of(get_remote(a.git, "origin")))
    for oid in sorted(remote.packed()):  # rewrite the store as a bgit before packs wrote it
        raw = remote.get(oid)
        replace_remote_object(remote, oid, None)
        remote.put(oid, raw)
    assert remote._list_files("packs") == [] and set(remote._list_loose()) == (
        payload_ids(a, "HEAD", ADAPTER) | payload_ids(a, "HEAD", ROLLOUT))
    b = clone(url, tmp_path / "b", store_url)
    assert filecmp.cmp(a.root / ADAPTER, b.root / ADAPTER, shallow=False)
    assert filecmp.cmp(a.root / ROLLOUT, b.root / ROLLOUT, shallow=False)


def _corrupt(store_url: str, oid: str, size: int) -> None:
    """Replace a remote object with a well-formed encoding of other bytes of its size."""
    remote = open_store_remote(store_url)
    other = (b"not the original bytes" * (size // 22 + 1))[:size]
    bogus = codecs.encode(other)
    assert hash_bytes(other) != oid
    replace_remote_object(remote, oid, bogus)


def test_corrupt_remote_object_is_reported_and_not_stored(tmp_path, origin, monkeypatch):
    kind, url, store_url = origin
    a = published(tmp_path, origin)
    victim, size = sorted(a.read_manifest("HEAD", ADAPTER).pieces)[0]
    _corrupt(store_url_of(get_remote(a.git, "origin")), victim, size)

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["clone", url, "b", *(["--store", store_url] if store_url else [])])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: object {victim} from 'origin' is corrupt (hash mismatch); not stored")
    with pytest.raises(RemoteObjectCorruptError):
        b = clone(url, tmp_path / "c", store_url, checkout=False)
        install_fetcher(b)
        b.checkout("origin/main")
    assert not (tmp_path / "c" / ".git" / "bgit" / "objects" / victim[:2] / victim[2:]).exists()


def test_unreachable_remote_is_one_line(tmp_path, origin, monkeypatch):
    kind, url, store_url = origin
    repo = new_repo(tmp_path / "a")
    dead = free_port()
    if kind == "path":
        bad_url, expected = str(tmp_path / "nowhere.git"), f"({tmp_path / 'nowhere.git'}): no repository at that path"
        add_remote(repo.git, "origin", bad_url)
        args = ["fetch"]
    elif kind == "git-daemon":
        bad_url = f"git://127.0.0.1:{dead}/x.git"
        expected = f"({bad_url}): failed to connect to 127.0.0.1"
        add_remote(repo.git, "origin", bad_url, str(tmp_path / "store"))
        args = ["push"]
    else:
        monkeypatch.setenv("BGIT_S3_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
        add_remote(repo.git, "origin", url, store_url)
        expected = f"({store_url}): Could not connect"
        args = ["push"]
    monkeypatch.chdir(repo.root)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith("Error: cannot reach remote 'origin' ") and expected in lines[0]
    if kind != "path":  # nothing moved: the graph waits for the payloads
        assert not [r for r in repo.git.references if r.startswith("refs/remotes/")]


def test_non_fast_forward_push_refused_and_pull(tmp_path, origin, monkeypatch):
    kind, url, store_url = origin
    a = published(tmp_path, origin)
    b = clone(url, tmp_path / "b", store_url)
    c = clone(url, tmp_path / "c", store_url)

    make_bake(a.root, 2)
    a.add(all=True)
    a.commit("a2")
    push(a)

    for seed in (3, 4):
        make_bake(b.root, seed)
        b.add(all=True)
        b.commit(f"b{seed}")
    monkeypatch.chdir(b.root)
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: push to 'origin' rejected: 'main' is not a fast-forward (fetch and pull first)"
    result = CliRunner().invoke(cli, ["pull"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: branch 'main' has diverged from 'origin/main' "
                                     "(2 local, 1 remote commits); merge it with 'bgit merge origin/main' "
                                     "(or 'bgit pull --merge')")
    assert b.head_commit().message.strip() == "b4"  # nothing merged or moved

    # A race: the remote moves after bgit looked. The ref update itself is compare-and-swap.
    from bgit.remote import graph
    with monkeypatch.context() as m, pytest.raises(PushRejectedError, match="is not a fast-forward"):
        m.setattr(graph, "list_heads", lambda *args, **kwargs: {})
        push(b)
    assert _remote_heads(a)["refs/heads/main"] == str(a.head_commit().id)

    before = c.head_commit().id
    outcome = pull(c)
    assert outcome.fast_forwarded and outcome.old == str(before)
    assert c.current_branch() == "main" and c.head_commit().id == a.head_commit().id
    assert filecmp.cmp(a.root / ADAPTER, c.root / ADAPTER, shallow=False)
    assert c.status().clean
    assert not pull(c).fast_forwarded


def test_killed_push_resumes_without_resending(tmp_path, origin, monkeypatch):
    monkeypatch.setattr(transfer, "PACK_BYTES", 64 << 10)  # a small bake in many packs
    kind, url, store_url = origin
    a = new_repo(tmp_path / "a")
    add_remote(a.git, "origin", url, store_url)
    total = len(payload_ids(a, "HEAD", ADAPTER) | payload_ids(a, "HEAD", ROLLOUT))
    dying = store_of(a)
    dying.fail_after_puts = 5
    with pytest.raises(ConnectionError):
        push(a, store_remote=dying)
    assert dying.puts == 5
    assert "refs/heads/main" not in _remote_heads(a)  # refs move only after all objects

    resumed = store_of(a)
    result = push(a, store_remote=resumed)
    assert result.updated and len(resumed.put_oids) == total - len(dying.put_oids)
    assert not set(resumed.put_oids) & set(dying.put_oids)
    assert "refs/heads/main" in _remote_heads(a)
    b = clone(url, tmp_path / "b", store_url)
    assert filecmp.cmp(a.root / ADAPTER, b.root / ADAPTER, shallow=False)


def test_fetch_brings_graph_only_unless_payloads_asked(tmp_path, origin):
    kind, url, store_url = origin
    a = published(tmp_path, origin)
    b = clone(url, tmp_path / "b", store_url, checkout=False)
    needed = payload_ids(a, "HEAD", ADAPTER) | payload_ids(a, "HEAD", ROLLOUT)
    assert b.git.references["refs/remotes/origin/main"].target == a.head_commit().id
    assert not any(b.store.has(oid) for oid in needed)
    assert fetch(b, payloads=True).transfer.objects == len(needed)
    assert all(b.store.has(oid) for oid in needed)
    assert fetch(b, payloads=True).transfer.objects == 0


def _remote_heads(repo: Repository) -> dict:
    from bgit.remote.graph import list_heads

    try:
        return list_heads(repo.git, get_remote(repo.git, "origin"))
    except Exception:
        return {}
