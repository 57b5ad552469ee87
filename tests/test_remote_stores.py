"""One test suite for every payload store remote (StoreRemote): a directory and S3 (moto
server on 127.0.0.1), plus the remote configuration and CLI surface."""

from __future__ import annotations

import json
import uuid

import pygit2
import pytest
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.remote.known import KnownObjects
from bgit.remote.packs import CorruptPackIndexError, build_pack, parse_index
from bgit.remote.stores import (DirectoryStoreRemote, ObjectAbsentError, ObjectTooLargeError,
                                StoreRemoteError, StoreUnreachableError, has_many_batched,
                                open_store_remote)
from bgit.repo import Repository
from bgit.store import codecs
from bgit.store.objects import hash_bytes

from remote_helpers import GitDaemon, MotoS3, free_port, set_env


@pytest.fixture(scope="module")
def moto():
    server = MotoS3()
    server.create_bucket("stores")
    yield server
    server.stop()


@pytest.fixture(params=["directory", "s3"])
def remote(request, tmp_path, monkeypatch):
    if request.param == "directory":
        store = open_store_remote(str(tmp_path / "objects"), create=True)
    else:
        server = request.getfixturevalue("moto")
        set_env(monkeypatch, server.env)
        store = open_store_remote(f"s3://stores/{uuid.uuid4().hex[:8]}/objects")
    store.check()
    return store


def objects(n: int) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        data = f"payload {i} ".encode() * (i + 50)
        out[hash_bytes(data)] = codecs.encode(data)
    return out


def test_put_get_round_trip_is_raw_bytes(remote):
    objs = objects(3)
    for oid, raw in objs.items():
        remote.put(oid, raw)
    for oid, raw in objs.items():
        assert remote.get(oid) == raw


def test_has_many_is_the_subset_present(remote):
    objs = objects(6)
    present = sorted(objs)[:4]
    for oid in present:
        remote.put(oid, objs[oid])
    assert remote.has_many(list(objs)) == set(present)
    assert remote.has_many([]) == set()


def test_list_and_idempotent_put(remote):
    objs = objects(4)
    assert list(remote.list()) == []
    for oid, raw in objs.items():
        remote.put(oid, raw)
        remote.put(oid, raw)
    assert sorted(remote.list()) == sorted(objs)


def test_get_absent_and_invalid_ids(remote):
    missing = "ab" * 32
    with pytest.raises(ObjectAbsentError):
        remote.get(missing)
    for bad in ("../../etc/passwd", "../" + "a" * 61, "AB" * 32):
        for call in (lambda: remote.put(bad, b"x"), lambda: remote.get(bad), lambda: remote.has_many([bad])):
            with pytest.raises(Exception, match="^invalid object id "):
                call()
    assert list(remote.list()) == []


def test_get_reads_no_more_than_max_bytes(remote):
    (oid, raw), = objects(1).items()
    remote.put(oid, raw)
    assert remote.get(oid, max_bytes=len(raw)) == raw
    with pytest.raises(ObjectTooLargeError, match=f"^object {oid} on the remote store is larger than "
                                                  f"{len(raw) - 1} bytes$"):
        remote.get(oid, max_bytes=len(raw) - 1)


def test_directory_store_never_shows_partial_objects(tmp_path):
    store = DirectoryStoreRemote(tmp_path / "d", create=True)
    store.check()
    oid, raw = next(iter(objects(1).items()))
    (tmp_path / "d" / oid[:2]).mkdir()
    (tmp_path / "d" / oid[:2] / ".tmp-123-abc").write_bytes(raw[:10])  # a killed writer's leftover
    assert list(store.list()) == [] and store.has_many([oid]) == set()
    store.put(oid, raw)
    assert list(store.list()) == [oid]


# -- packs ---------------------------------------------------------------------------------

def test_packed_objects_read_like_loose_ones(remote):
    objs = objects(5)
    packed, loose = sorted(objs)[:3], sorted(objs)[3:]
    pack = remote.put_pack([(oid, objs[oid]) for oid in packed])
    for oid in loose:
        remote.put(oid, objs[oid])
    files = remote._list_files("packs")
    assert files == sorted([f"{pack.name}.idx", f"{pack.name}.pack"])
    assert pack.name == "pack-" + hash_bytes(pack.index)
    assert remote._read_file(f"packs/{pack.name}.pack", 0, 1 << 20) == b"".join(objs[o] for o in packed)

    fresh = open_store_remote(remote.url)  # another process's view: reads the index
    assert sorted(fresh.list()) == sorted(objs)
    assert fresh.has_many(list(objs) + ["ef" * 32]) == set(objs)
    for oid, raw in objs.items():
        assert fresh.get(oid) == raw and fresh.get(oid, max_bytes=len(raw)) == raw
    with pytest.raises(ObjectTooLargeError):
        fresh.get(packed[1], max_bytes=len(objs[packed[1]]) - 1)
    entry = fresh.packed()[packed[1]]
    assert fresh.read_pack(entry.pack, entry.offset, entry.length) == objs[packed[1]]


def test_a_pack_is_visible_once_its_index_is_and_later_packs_are_seen(remote):
    objs = objects(4)
    first, second = sorted(objs)[:2], sorted(objs)[2:]
    reader = open_store_remote(remote.url)
    assert reader.has_many(list(objs)) == set()
    data = build_pack([(oid, objs[oid]) for oid in first])
    remote._write_file(f"packs/{data.name}.pack", data.data)  # a writer killed before its index
    assert reader.has_many(list(objs)) == set() and list(reader.list()) == []
    with pytest.raises(ObjectAbsentError):
        reader.get(first[0])
    write_file = remote._write_file

    def crash_on_pack_data(path, data):
        if path.endswith(".pack"):
            raise ConnectionError("simulated crash")
        write_file(path, data)

    remote._write_file = crash_on_pack_data  # a push that dies writing its data names nothing
    with pytest.raises(ConnectionError):
        remote.put_pack([(oid, objs[oid]) for oid in second])
    assert not [f for f in remote._list_files("packs") if f.endswith(".idx")]
    remote._write_file = write_file
    remote.put_pack([(oid, objs[oid]) for oid in first])
    remote.put_pack([(oid, objs[oid]) for oid in second])
    assert has_many_batched(reader, first) == set(first)  # reads the indexes again first
    assert reader.get(second[1]) == objs[second[1]]  # a miss reads the new indexes
    assert reader.has_many(list(objs)) == set(objs)


@pytest.mark.parametrize("damage, reason", [
    (lambda text: text + b"x", "content does not match its name"),
    (lambda text: text.replace(b"v1", b"v2", 1), "not a bgit pack index"),
    (lambda text: text[:-1], "not a bgit pack index"),
    (lambda text: text.replace(b" 0 ", b" 1 ", 1), "line 2: entries must follow one another, each id once"),
    (lambda text: text + text.split(b"\n")[1] + b"\n", "line 4: entries must follow one another"),
    (lambda text: text.replace(b"\n", b"\n\xff", 1), "not ASCII"),
    (lambda text: text.replace(b"\n", b"\n../", 1), "line 2 is not '<id> <offset> <length>'"),
    (lambda text: text.split(b"\n", 1)[0] + b"9\n" + text.split(b"\n", 1)[1], "entries cover"),
])
def test_a_damaged_or_hostile_pack_index_is_refused_by_name(damage, reason):
    objs = objects(2)
    pack = build_pack(list(objs.items()))
    assert parse_index("s3://b/p", pack.name, pack.index) == pack.entries
    text = damage(pack.index)
    name = pack.name if reason == "content does not match its name" else "pack-" + hash_bytes(text)
    with pytest.raises(CorruptPackIndexError, match=f"^pack index {name}.idx on payload store s3://b/p "
                                                    f"is corrupt \\({reason}"):
        parse_index("s3://b/p", name, text)


def test_an_index_claiming_more_than_its_pack_holds_cannot_read_past_it(tmp_path):
    remote = open_store_remote(str(tmp_path / "objects"), create=True)
    remote.check()
    objs = objects(2)
    pack = remote.put_pack(list(objs.items()))
    (tmp_path / "objects" / "packs" / f"{pack.name}.pack").write_bytes(pack.data[:10])  # truncated
    last = list(objs)[-1]
    assert open_store_remote(remote.url).get(last) == b""  # short: its hash check fails the read
    with pytest.raises(Exception, match="^invalid pack name"):
        remote.read_pack("../../etc/passwd", 0, 10)


def test_s3_unreachable_and_missing_bucket(moto, monkeypatch):
    set_env(monkeypatch, moto.env)
    with pytest.raises(StoreRemoteError, match="bucket 'nosuch' does not exist"):
        open_store_remote("s3://nosuch/p").check()
    monkeypatch.setenv("BGIT_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnreachableError):
        open_store_remote("s3://stores/p").check()


def test_known_objects_belong_to_one_store_url(tmp_path):
    oid = "cd" * 32
    with KnownObjects(tmp_path, "origin", "s3://a/b") as known:
        known.add([oid])
    assert oid in KnownObjects(tmp_path, "origin", "s3://a/b")
    assert oid not in KnownObjects(tmp_path, "origin", "s3://elsewhere")


# -- configuration and CLI ----------------------------------------------------------------

def test_remote_add_list_remove_in_git_config(tmp_path, monkeypatch):
    repo = Repository.init(tmp_path / "r")
    monkeypatch.chdir(repo.root)
    runner = CliRunner()
    result = runner.invoke(cli, ["remote", "add", "origin", "git://example.com/bakes.git",
                                 "--store", "s3://bakes/team"])
    assert result.exit_code == 0, result.output
    config = (repo.root / ".git" / "config").read_text()
    assert 'url = git://example.com/bakes.git' in config and "bgitstore = s3://bakes/team" in config
    assert runner.invoke(cli, ["remote"]).output == "origin\n"
    verbose = runner.invoke(cli, ["remote", "-v"]).output
    assert "origin\tgit://example.com/bakes.git (graph)" in verbose
    assert "origin\ts3://bakes/team (payloads)" in verbose
    listed = json.loads(runner.invoke(cli, ["remote", "--json"]).output)
    assert listed == [{"name": "origin", "url": "git://example.com/bakes.git", "store": "s3://bakes/team"}]

    again = runner.invoke(cli, ["remote", "add", "origin", "/x"])
    assert again.exit_code == 1 and again.output == "Error: remote 'origin' already exists\n"
    secret = runner.invoke(cli, ["remote", "add", "o2", "https://u:hunter2@example.com/r.git"])
    assert secret.exit_code == 1 and "hunter2" not in (repo.root / ".git" / "config").read_text()

    assert runner.invoke(cli, ["remote", "remove", "origin"]).exit_code == 0
    assert runner.invoke(cli, ["remote"]).output == ""
    gone = runner.invoke(cli, ["remote", "remove", "origin"])
    assert gone.exit_code == 1 and gone.output == "Error: no such remote 'origin' (see 'bgit remote -v')\n"


def test_push_without_payload_store_is_explained(tmp_path, monkeypatch):
    repo = Repository.init(tmp_path / "r")
    (repo.root / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    repo.add(all=True)
    repo.commit("one")
    pygit2.init_repository(str(tmp_path / "srv" / "x.git"), bare=True)
    daemon = GitDaemon(tmp_path / "srv")
    try:
        monkeypatch.chdir(repo.root)
        CliRunner().invoke(cli, ["remote", "add", "origin", daemon.url("x.git")])
        result = CliRunner().invoke(cli, ["push"])
    finally:
        daemon.stop()
    assert result.exit_code == 1
    assert result.output == ("Error: remote 'origin' has no payload store; remove it and add it "
                             "again with --store DIR or --store s3://BUCKET/PREFIX\n")


@pytest.mark.parametrize("command", [["remote"], ["remote", "add"], ["remote", "remove"], ["push"],
                                     ["fetch"], ["pull"], ["clone"]])
def test_every_remote_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Example: bgit " in result.output
