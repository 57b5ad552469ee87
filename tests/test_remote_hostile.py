"""Hostile remotes and faults, end to end with real repositories, real `bgit` processes and
the `git` CLI: objects that claim gigabytes, corrupt local objects on push, credentials in
store URLs, annotated tags, fsck in lazy clones, ids that try to leave the store, and a
push killed with SIGKILL. Each test also checks that nothing was lost: fsck is clean and
earlier commits still check out byte for byte."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pygit2
import pytest
import zstandard
from click.testing import CliRunner

from bgit.cli.main import cli
from bgit.remote import add_remote, clone, fsck, install_fetcher, push
from bgit.remote.config import get_remote, store_url_of
from bgit.remote.stores import open_store_remote
from bgit.repo import Repository
from bgit.store import codecs
from bgit.store.objects import hash_bytes

from remote_helpers import (adapter_tensors, bf16_like, make_bake, replace_remote_object,
                            write_safetensors)
from repo_helpers import git

ADAPTER = "adapter/adapter_model.safetensors"
ROLLOUT = "targets/x/rollout.jsonl"
CLAIM = 2 << 30            # what the hostile objects claim to hold: 2 GiB
RSS_ALLOWANCE = 300 << 20  # peak RSS a refused clone may add over an honest one
GIT_USER = ["-c", "user.name=Tester", "-c", "user.email=tester@example.com"]


# -- helpers -----------------------------------------------------------------------------------

# Linux charges a child the peak RSS of the memory it was forked from (exec keeps the old
# image's high-water mark), so pytest's own peak would hide the child's. A small Python in
# between starts bgit and reports bgit's own peak.
MEASURE = """
import os, subprocess, sys
proc = subprocess.Popen([sys.executable, "-m", "bgit", *sys.argv[2:]])
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = 0
open(sys.argv[1], "w").write(f"{usage.ru_maxrss * 1024} {os.waitstatus_to_exitcode(status)}")
"""


def run_measured(cwd: Path, *args: str) -> tuple[int, str, str, int]:
    """Run ``python -m bgit ARGS``; returns (exit code, stdout, stderr, its peak RSS in bytes)."""
    out, err, usage = cwd / ".bgit-stdout", cwd / ".bgit-stderr", cwd / ".bgit-usage"
    with open(out, "wb") as o, open(err, "wb") as e:
        subprocess.run([sys.executable, "-c", MEASURE, str(usage), *args], cwd=cwd, stdout=o, stderr=e,
                       check=True)
    rss, code = map(int, usage.read_text().split())
    texts = out.read_text(), err.read_text()
    for path in (out, err, usage):
        path.unlink()
    return code, *texts, rss


def bake(repo: Repository, seed: int, big: bool = True) -> None:
    """Commit an adapter (with one 512 KiB tensor, a single piece) and a rollout."""
    tensors = adapter_tensors(seed)
    if big:
        tensors["big.weight"] = bf16_like(np.random.default_rng(seed + 100), (512, 512))
    make_bake(repo.root, seed, tensors=tensors)
    repo.add(all=True)
    repo.commit(f"bake {seed}")


def origin_store(repo: Repository):
    return open_store_remote(store_url_of(get_remote(repo.git, "origin")))


def replace_object(repo: Repository, oid: str, raw: bytes | None) -> bytes:
    """Make origin's store hold ``raw`` for ``oid`` (None: nothing); returns what it held."""
    return replace_remote_object(origin_store(repo), oid, raw)


def zero_frame(nbytes: int, announce: bool) -> bytes:
    """A zstd frame of ``nbytes`` zeros (~64 KB for 2 GiB), built without holding them."""
    stream = zstandard.ZstdCompressor(level=1).compressobj(size=nbytes if announce else -1)
    block = bytes(16 << 20)
    return b"".join([stream.compress(block) for _ in range(nbytes // len(block))] + [stream.flush()])


def header(size: int) -> bytes:
    return codecs.HEADER.pack(codecs.MAGIC, codecs.CODEC_ZSTD, 1, 0, size)


def piece_of(repo: Repository, ref: str, tensor: str) -> tuple[str, int]:
    manifest = repo.read_manifest(ref, ADAPTER)
    (oid,) = next(t for t in manifest.tensors if t.name == tensor).pieces
    return oid, dict(manifest.pieces)[oid]


def remote_head(origin: Path, ref: str = "refs/heads/main") -> str | None:
    result = git(origin, "rev-parse", "--verify", "-q", ref, check=False)
    return result.stdout.strip() or None


@pytest.fixture(scope="module")
def frames():
    return {"announced": zero_frame(CLAIM, True), "unannounced": zero_frame(CLAIM, False)}


@pytest.fixture
def published(tmp_path):
    """Repo 'a' with two bakes pushed to the path remote 'origin.git' (payloads in
    origin.git/bgit-objects); copies of each bake's adapter for byte comparisons."""
    a = Repository.init(tmp_path / "a")
    bake(a, 1)
    shutil.copy(a.root / ADAPTER, tmp_path / "adapter-1")
    bake(a, 2)
    shutil.copy(a.root / ADAPTER, tmp_path / "adapter-2")
    add_remote(a.git, "origin", str(tmp_path / "origin.git"))
    push(a)
    return a


# -- 1. an object that claims (or expands to) 2 GiB ---------------------------------------------

@pytest.mark.parametrize("variant", ["header-claims-2GiB", "frame-claims-2GiB", "frame-expands-silently"])
def test_object_expanding_to_2gib_is_refused_within_bounded_memory(tmp_path, published, frames, variant):
    a = published
    code, _, err, honest_rss = run_measured(tmp_path, "clone", str(tmp_path / "origin.git"), "honest")
    assert code == 0, err
    victim, size = piece_of(a, "HEAD", "big.weight")
    other, other_size = piece_of(a, "HEAD", sorted(adapter_tensors(2))[0])
    if variant == "header-claims-2GiB":  # the reviewer's object: 64 KB of zstd, 2 GiB of zeros
        raw, reason = header(CLAIM) + frames["announced"], f"header claims {CLAIM} bytes, the manifest records {size}"
    elif variant == "frame-claims-2GiB":  # the header tells the truth, the zstd frame does not
        raw, reason = header(size) + frames["announced"], f"zstd frame claims {CLAIM} bytes, the header {size}"
    else:  # nothing announces the 2 GiB; decompression itself must stop at the recorded size
        raw, reason = header(size) + frames["unannounced"], "cannot decompress ("
    replace_object(a, victim, raw)
    original_other = replace_object(a, other, header(CLAIM) + frames["announced"])  # a second worker's
    code, out, err, rss = run_measured(tmp_path, "clone", str(tmp_path / "origin.git"), "b")

    assert rss - honest_rss < RSS_ALLOWANCE, (rss >> 20, honest_rss >> 20)
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    # Whichever a worker meets first; the small one is over its bound before it is read.
    assert line.startswith(f"Error: object {victim} from 'origin' is corrupt ({reason}") or \
        line.startswith(f"Error: object {other} from 'origin' is corrupt (header claims {CLAIM} bytes") or \
        line.startswith(f"Error: object {other} from 'origin' is corrupt "
                        f"(more than {codecs.HEADER_SIZE + other_size} bytes stored)")
    assert line.endswith("; not stored")

    replace_object(a, other, original_other)  # the big object alone, so its own check is seen
    code, out, err, rss = run_measured(tmp_path, "clone", str(tmp_path / "origin.git"), "b")
    assert rss - honest_rss < RSS_ALLOWANCE, (rss >> 20, honest_rss >> 20)
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"Error: object {victim} from 'origin' is corrupt ({reason}")
    assert line.endswith("; not stored")
    assert not (tmp_path / "b").exists()  # a failed clone leaves nothing behind
    honest = Repository.open(tmp_path / "honest")
    assert filecmp.cmp(honest.root / ADAPTER, tmp_path / "adapter-2", shallow=False)
    assert fsck(honest).ok and fsck(honest).not_fetched  # the older bake is on the remote


def test_lazy_checkout_of_a_2gib_object_is_refused_within_bounded_memory(tmp_path, published, frames):
    """The checkout fetcher gets bare ids; sizes come from the manifests the refs reach."""
    a = published
    code, _, err, _ = run_measured(tmp_path, "clone", str(tmp_path / "origin.git"), "b")
    assert code == 0, err
    b = tmp_path / "b"
    code, _, err, honest_rss = run_measured(b, "status")  # same imports, no payload work
    assert code == 0, err
    victim, size = piece_of(a, "HEAD~1", "big.weight")
    assert victim not in {oid for oid, _ in a.read_manifest("HEAD", ADAPTER).pieces}
    replace_object(a, victim, header(size) + frames["unannounced"])

    code, out, err, rss = run_measured(b, "checkout", "HEAD~1")
    assert rss - honest_rss < RSS_ALLOWANCE, (rss >> 20, honest_rss >> 20)
    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith(f"Error: object {victim} from 'origin' is corrupt (cannot decompress (")
    clone_b = Repository.open(b)
    assert not clone_b.store.has(victim)
    assert filecmp.cmp(b / ADAPTER, tmp_path / "adapter-2", shallow=False)  # work tree untouched
    assert clone_b.status().clean
    assert json.loads(run_measured(b, "fsck", "--json")[1])["ok"]


def test_fetching_an_id_no_manifest_sizes_is_still_bounded(tmp_path, published, frames):
    from bgit.remote import RemoteObjectCorruptError, fetch_objects

    b = clone(str(tmp_path / "origin.git"), tmp_path / "b")
    stray = "ab" * 32  # named by no manifest the refs reach: no recorded size to hold it to
    origin_store(published).put(stray, header(CLAIM) + frames["announced"])
    with pytest.raises(RemoteObjectCorruptError, match=(
            f"^object {stray} from 'origin' is corrupt \\(header claims {CLAIM} bytes, more than "
            f"any object bgit writes\\); not stored$")):
        fetch_objects(b, {stray})
    assert not b.store.has(stray)


def test_remote_object_larger_than_its_size_is_not_read_whole(tmp_path, published):
    a = published
    victim, size = piece_of(a, "HEAD", "big.weight")
    original = replace_object(a, victim, origin_store(a).get(victim) + bytes(64 << 20))  # padded by 64 MiB
    with pytest.raises(Exception) as error:
        clone(str(tmp_path / "origin.git"), tmp_path / "b")
    assert str(error.value) == (f"object {victim} from 'origin' is corrupt "
                                f"(more than {codecs.HEADER_SIZE + size} bytes stored); not stored")
    replace_object(a, victim, original)
    b = clone(str(tmp_path / "origin.git"), tmp_path / "c")
    assert filecmp.cmp(b.root / ADAPTER, tmp_path / "adapter-2", shallow=False)


# -- 2. push verifies every object it sends ------------------------------------------------------

def test_push_refuses_a_corrupt_local_object_and_moves_no_ref(tmp_path, published, monkeypatch):
    a = published
    origin = tmp_path / "origin.git"
    before = remote_head(origin)
    bake(a, 3)
    victim, size = piece_of(a, "HEAD", "big.weight")
    path = a.store.object_path(victim)
    good = path.read_bytes()
    os.chmod(path, 0o644)
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0x01  # the reviewer's fault: one flipped byte
    path.write_bytes(bytes(flipped))

    monkeypatch.chdir(a.root)
    result = CliRunner().invoke(cli, ["push"])
    short = str(a.head_commit().id)[:8]
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith(f"Error: cannot push to 'origin': local object {victim} is corrupt (")
    assert line.endswith(f"); needed by {short}:{ADAPTER}; no ref was updated")
    assert remote_head(origin) == before  # the remote still serves bake 2, checked with git
    assert victim not in set(origin_store(a).list())

    other = bytes(size)  # a well-formed object of the right size holding other bytes
    path.write_bytes(codecs.encode(other))
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 1 and result.output == (
        f"Error: cannot push to 'origin': local object {victim} is corrupt (content does not match "
        f"its id); needed by {short}:{ADAPTER}; no ref was updated\n")
    assert remote_head(origin) == before

    path.write_bytes(good)  # repaired: the push goes through and every bake survives
    assert CliRunner().invoke(cli, ["push"]).exit_code == 0
    assert remote_head(origin) == str(a.head_commit().id)
    b = clone(str(origin), tmp_path / "b")
    assert filecmp.cmp(b.root / ADAPTER, a.root / ADAPTER, shallow=False)
    install_fetcher(b)
    for ref, copy in (("main~1", "adapter-2"), ("main~2", "adapter-1")):
        b.checkout(ref)
        assert filecmp.cmp(b.root / ADAPTER, tmp_path / copy, shallow=False)
    assert b.fsck().ok and a.fsck().ok


def test_push_over_the_raw_path_verifies_too(tmp_path, published):
    """Remotes without the file fast path (S3) get the bytes read once, verified, then sent."""
    from bgit.remote import PushObjectError
    from remote_helpers import CountingStore

    a = published
    bake(a, 3)
    victim, size = piece_of(a, "HEAD", "big.weight")
    path = a.store.object_path(victim)
    os.chmod(path, 0o644)
    path.write_bytes(codecs.encode(bytes(size)))
    counting = CountingStore(open_store_remote(store_url_of(get_remote(a.git, "origin"))))
    with pytest.raises(PushObjectError, match=f"local object {victim} is corrupt \\(content does not match"):
        push(a, store_remote=counting)
    assert victim not in counting.put_oids
    assert remote_head(tmp_path / "origin.git") == str(a.head_commit().parents[0].id)


def test_push_names_a_missing_local_object(tmp_path, published, monkeypatch):
    a = published
    bake(a, 4, big=False)
    victim = sorted(a.read_manifest("HEAD", ADAPTER).object_ids() - a.read_manifest("HEAD~1", ADAPTER).object_ids())[0]
    os.unlink(a.store.object_path(victim))
    monkeypatch.chdir(a.root)
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 1 and result.output == (
        f"Error: cannot push to 'origin': local object {victim} is missing; needed by "
        f"{str(a.head_commit().id)[:8]}:{ADAPTER}; no ref was updated\n")
    assert remote_head(tmp_path / "origin.git") == str(a.head_commit().parents[0].id)


# -- 3. credentials never reach .git/config or a message -----------------------------------------

@pytest.mark.parametrize("store_url, shown", [
    ("s3://AKIAEXAMPLEKEY:SECRETSECRET@bakes/team", "s3://***@bakes/team"),
    ("s3://AKIAEXAMPLEKEY@bakes/team", "s3://***@bakes/team"),
])
def test_store_url_with_credentials_is_refused_without_echoing_them(tmp_path, monkeypatch, store_url, shown):
    repo = Repository.init(tmp_path / "r")
    config = (repo.root / ".git" / "config").read_bytes()
    monkeypatch.chdir(repo.root)
    expected = (f"Error: invalid payload store URL '{shown}': credentials in the URL would be written "
                f"into .git/config; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use ~/.aws instead\n")
    result = CliRunner().invoke(cli, ["remote", "add", "origin", "git://example.com/b.git", "--store", store_url])
    assert result.exit_code == 1 and result.output == expected
    assert (repo.root / ".git" / "config").read_bytes() == config

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["clone", str(tmp_path / "r"), "c", "--store", store_url])
    assert result.exit_code == 1 and result.output == expected
    assert not (tmp_path / "c").exists()

    # Written into .git/config behind bgit's back, it is still refused and still not echoed.
    git(repo.root, "config", "remote.origin.url", str(tmp_path / "srv.git"))
    git(repo.root, "config", "remote.origin.bgitstore", store_url)
    bake(repo, 1, big=False)
    monkeypatch.chdir(repo.root)
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 1 and result.output == expected
    assert "SECRETSECRET" not in result.output and "AKIAEXAMPLEKEY" not in result.output


def test_graph_url_password_is_not_echoed(tmp_path, monkeypatch):
    repo = Repository.init(tmp_path / "r")
    monkeypatch.chdir(repo.root)
    result = CliRunner().invoke(cli, ["remote", "add", "o", "https://bob:hunter2@example.com/r.git"])
    assert result.exit_code == 1 and result.output == (
        "Error: invalid remote URL 'https://bob:***@example.com/r.git': a password in the URL would be "
        "written into .git/config; use an ssh agent, a credential helper or BGIT_GIT_PASSWORD\n")
    assert "hunter2" not in (repo.root / ".git" / "config").read_text()


# -- 4. annotated tags ----------------------------------------------------------------------------

def test_annotated_tags_push_fetch_and_check_out(tmp_path, published, monkeypatch):
    a = published
    origin = tmp_path / "origin.git"
    git(a.root, *GIT_USER, "tag", "-a", "v2", "-m", "second release")
    git(a.root, *GIT_USER, "tag", "-a", "v1", "-m", "first release", "HEAD~1")
    monkeypatch.chdir(a.root)
    result = CliRunner().invoke(cli, ["push", "--tags"])
    assert result.exit_code == 0, result.output
    assert git(origin, "cat-file", "-t", "v1").stdout.strip() == "tag"
    assert git(origin, "rev-parse", "v1^{}").stdout.strip() == str(a.head_commit().parents[0].id)

    bake(a, 3)  # a push with annotated tags already on the remote (it crashed here before)
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 0, result.output
    git(a.root, *GIT_USER, "tag", "-a", "v3", "-m", "third release")
    assert CliRunner().invoke(cli, ["push", "--tags"]).exit_code == 0
    assert git(origin, "rev-parse", "v3^{}").stdout.strip() == str(a.head_commit().id)

    b = clone(str(origin), tmp_path / "b")
    for tag in ("v1", "v2", "v3"):
        assert git(b.root, "cat-file", "-t", tag).stdout.strip() == "tag"
        assert git(b.root, "rev-parse", f"{tag}^{{}}").stdout.strip() == git(a.root, "rev-parse", f"{tag}^{{}}").stdout.strip()
    monkeypatch.chdir(b.root)
    for tag, copy in (("v1", "adapter-1"), ("v2", "adapter-2")):
        result = CliRunner().invoke(cli, ["checkout", tag])
        assert result.exit_code == 0, result.output
        assert filecmp.cmp(b.root / ADAPTER, tmp_path / copy, shallow=False)
    result = CliRunner().invoke(cli, ["fetch", "--payloads"])
    assert result.exit_code == 0, result.output
    assert git(b.root, "fsck", "--strict").returncode == 0


# -- 5. fsck in a lazy clone ----------------------------------------------------------------------

def test_fsck_in_a_lazy_clone_reports_not_fetched_and_remote_checks_the_store(tmp_path, published, monkeypatch):
    a = published
    b = clone(str(tmp_path / "origin.git"), tmp_path / "b")
    need = lambda ref: a.read_manifest(ref, ADAPTER).object_ids() | a.read_manifest(ref, ROLLOUT).object_ids()
    old_only = need("HEAD~1") - need("HEAD")
    assert old_only and not any(b.store.has(oid) for oid in old_only)
    monkeypatch.chdir(b.root)

    result = CliRunner().invoke(cli, ["fsck"])
    assert result.exit_code == 0, result.output
    verified = len(need("HEAD"))
    assert result.output == (f"{len(old_only)} objects not fetched yet (on remote 'origin')\n"
                             f"ok: 3 manifests, {verified} objects verified\n")
    report = json.loads(CliRunner().invoke(cli, ["fsck", "--json"]).output)
    assert report["ok"] and report["problems"] == []
    assert {n["oid"] for n in report["not_fetched"]} == old_only
    assert {n["remote"] for n in report["not_fetched"]} == {"origin"}
    short = str(a.head_commit().parents[0].id)[:8]
    assert all(n["needed_by"] and n["needed_by"][0].startswith(short) for n in report["not_fetched"])

    for args in (["fsck", "--remote"], ["fsck", "--remote", "origin"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0 and result.output.endswith(f"ok: 3 manifests, {verified} objects verified\n")

    lost = sorted(old_only)[0]
    replace_object(a, lost, None)  # gone from the remote's store as well: truly missing
    assert CliRunner().invoke(cli, ["fsck"]).exit_code == 0  # bgit's records still place it there
    result = CliRunner().invoke(cli, ["fsck", "--remote"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"object {lost} is missing; needed by {short}:{ADAPTER}" or \
        result.output.splitlines()[-1] == f"object {lost} is missing; needed by {short}:{ROLLOUT}"
    report = json.loads(CliRunner().invoke(cli, ["fsck", "--remote", "--json"]).output)
    assert not report["ok"] and len(report["problems"]) == 1 and lost in report["problems"][0]
    assert {n["oid"] for n in report["not_fetched"]} == old_only - {lost}

    result = CliRunner().invoke(cli, ["fsck", "--remote", "nosuch"])
    assert result.exit_code == 1 and result.output == "Error: no such remote 'nosuch' (see 'bgit remote -v')\n"


def test_fsck_without_a_remote_still_reports_a_missing_object(tmp_path, published, monkeypatch):
    a = published
    bake(a, 5, big=False)  # never pushed: no remote can have its objects
    victim = sorted(a.read_manifest("HEAD", ADAPTER).object_ids() - a.read_manifest("HEAD~1", ADAPTER).object_ids())[0]
    os.unlink(a.store.object_path(victim))
    monkeypatch.chdir(a.root)
    result = CliRunner().invoke(cli, ["fsck"])
    assert result.exit_code == 1
    assert result.output == f"object {victim} is missing; needed by {str(a.head_commit().id)[:8]}:{ADAPTER}\n"


# -- ids and paths that try to leave the store --------------------------------------------------------

def test_manifest_naming_an_escaping_object_id_is_refused(tmp_path, published, monkeypatch):
    a = published
    evil = (b'bgit-manifest v1\n{"blake3":"' + b"0" * 64 + b'","kind":"blob",'
            b'"pieces":[["../../../../escaped",5]],"size":5}\n')
    tree = a.git.TreeBuilder(a.head_commit().tree)
    tree.insert("evil.bin", a.git.create_blob(evil), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("Mallory", "m@example.com")
    commit = a.git.create_commit("refs/heads/main", sig, sig, "evil", tree.write(), [a.head_commit().id])
    short = str(commit)[:8]
    expected = (f"Error: corrupted manifest at {short}:evil.bin: pieces[0] id must be 64 lowercase hex "
                f"digits\n")
    monkeypatch.chdir(a.root)
    result = CliRunner().invoke(cli, ["push"])
    assert result.exit_code == 1 and result.output == expected
    git(a.root, "push", "-q", "origin", "main")  # a hostile remote's graph, pushed by plain git

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["clone", str(tmp_path / "origin.git"), "b"])
    assert result.exit_code == 1 and result.output == expected
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.rglob("escaped"))
    result = CliRunner().invoke(cli, ["clone", str(tmp_path / "origin.git"), "c", "--no-checkout"])
    assert result.exit_code == 0, result.output
    c = Repository.open(tmp_path / "c")
    install_fetcher(c)
    c.checkout("origin/main~1")  # the bakes before the hostile commit are intact
    assert filecmp.cmp(c.root / ADAPTER, tmp_path / "adapter-2", shallow=False)


@pytest.mark.parametrize("bad", ["../x", "../../etc/passwd", "ab/../../" + "c" * 55, "A" * 64, "/" + "a" * 63])
def test_store_remote_refuses_escaping_ids(tmp_path, bad):
    store = open_store_remote(str(tmp_path / "objects"), create=True)
    store.check()
    for call in (lambda: store.get(bad), lambda: store.has_many([bad]), lambda: store.put(bad, b"x"),
                 lambda: store.put_from_file(bad, tmp_path / "objects")):
        with pytest.raises(Exception, match="^invalid object id "):
            call()
    assert list((tmp_path / "objects").iterdir()) == []
    assert not (tmp_path / "x").exists()


# -- a push killed with SIGKILL mid-transfer -------------------------------------------------------

def test_push_killed_with_sigkill_resumes_and_the_remote_stays_consistent(tmp_path):
    a = Repository.init(tmp_path / "a")
    rng = np.random.default_rng(7)
    (a.root / "adapter").mkdir()
    write_safetensors(a.root / ADAPTER, {f"t{i:04d}": bf16_like(rng, (32, 512)) for i in range(600)})
    a.add(all=True)
    a.commit("a big bake")
    origin = tmp_path / "origin.git"
    add_remote(a.git, "origin", str(origin))
    total = len(a.read_manifest("HEAD", ADAPTER).object_ids())
    known = a.bgit_dir / "remotes" / "origin" / "known"

    # Packs of 256 KiB (8 of these tensors), so the kill lands between packs.
    small_packs = ("from bgit.remote import transfer; transfer.PACK_BYTES = 256 << 10; "
                   "from bgit.cli.main import main; main()")
    proc = subprocess.Popen([sys.executable, "-c", small_packs, "push", "-q"], cwd=a.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if known.exists() and len(known.read_text().splitlines()) > 20:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "push ended before it could be killed"

    store = open_store_remote(str(origin / "bgit-objects"))
    arrived = set(store.list())
    assert 0 < len(arrived) < total, (len(arrived), total)  # killed mid-transfer
    for oid in arrived:  # no half-written object is visible
        assert hash_bytes(codecs.decode(store.get(oid), oid)) == oid
    assert remote_head(origin) is None  # refs move only after every object arrived

    result = subprocess.run([sys.executable, "-m", "bgit", "push"], cwd=a.root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sent = int(result.stdout.split("Sent ")[1].split(" objects")[0])
    assert sent == total - len(arrived)  # nothing that arrived is sent again
    assert remote_head(origin) == str(a.head_commit().id)
    assert set(store.list()) >= a.read_manifest("HEAD", ADAPTER).object_ids()
    assert git(origin, "fsck", "--strict").returncode == 0
    b = clone(str(origin), tmp_path / "b")
    assert filecmp.cmp(b.root / ADAPTER, a.root / ADAPTER, shallow=False)
    assert b.fsck().ok and a.fsck().ok
