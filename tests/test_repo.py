"""The repository layer on real git repositories, cross-checked with the git CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pygit2
import pytest
from safetensors import safe_open

from bgit.repo import (
    BranchError,
    CorruptManifestError,
    DirtyWorkTreeError,
    NotARepositoryError,
    NothingToCommitError,
    Repository,
    UnknownRevisionError,
    UnsafePathError,
)
from bgit.repo import status as status_module
from repo_helpers import git, new_repo, sha256, store_files, write_adapter, write_jsonl

ADAPTER = "adapter/adapter_model.safetensors"
DATA = "targets/yoda/rollout.jsonl"


def _bake_files(root: Path, seed: int) -> dict[str, str]:
    write_adapter(root / ADAPTER, seed=seed)
    write_jsonl(root / DATA, 300, seed=seed)
    (root / "adapter" / "adapter_config.json").write_text('{"r": 16, "seed": %d}\n' % seed)
    return {p: sha256(root / p) for p in (ADAPTER, DATA, "adapter/adapter_config.json")}


def _commit_all(repo: Repository, message: str) -> str:
    repo.add(all=True)
    return repo.commit(message)


def test_init_writes_example_and_commits_nothing(tmp_path):
    repo = Repository.init(tmp_path / "repo", example={"input.yml": b"# the example\n"})
    assert (repo.root / "input.yml").read_text() == "# the example\n"
    assert (repo.root / ".git" / "bgit").is_dir()
    assert repo.head_commit() is None and repo.current_branch() == "main"
    assert git(repo.root, "symbolic-ref", "HEAD").stdout.strip() == "refs/heads/main"
    assert Repository.open(repo.root / "input.yml").root == repo.root  # discovers upwards
    (repo.root / "sub" / "dir").mkdir(parents=True)
    assert Repository.open(repo.root / "sub" / "dir").root == repo.root
    with pytest.raises(NotARepositoryError, match="not a bgit repository"):
        Repository.open(tmp_path)
    git(tmp_path, "init", "-q", "plain")
    with pytest.raises(NotARepositoryError):
        Repository.open(tmp_path / "plain")


def test_payloads_round_trip_across_branches(tmp_path):
    repo = new_repo(tmp_path)
    first = _bake_files(repo.root, seed=1)
    main_commit = _commit_all(repo, "first bake")
    assert repo.status().clean

    # git sees a manifest at the payload path, and a clean object database
    shown = git(repo.root, "show", f"HEAD:{ADAPTER}").stdout
    assert shown.startswith("bgit-manifest v1\n") and '"kind":"safetensors"' in shown
    assert git(repo.root, "show", f"HEAD:{DATA}").stdout.startswith("bgit-manifest v1\n")
    assert git(repo.root, "show", "HEAD:input.yml").stdout == (repo.root / "input.yml").read_text()
    assert git(repo.root, "fsck", "--full", "--strict").returncode == 0
    manifest = repo.read_manifest("HEAD", ADAPTER)
    assert sorted(t.dtype for t in manifest.tensors) == ["BF16", "F16", "F32", "I64"]

    repo.checkout("main", new_branch="other")
    second = _bake_files(repo.root, seed=2)
    (repo.root / DATA).unlink()
    _commit_all(repo, "second bake, no dataset")
    assert git(repo.root, "log", "--format=%s", "other").stdout.splitlines() == ["second bake, no dataset", "first bake"]

    repo.checkout("main")
    assert {p: sha256(repo.root / p) for p in first} == first
    assert repo.status().clean and repo.current_branch() == "main"
    with safe_open(str(repo.root / ADAPTER), "pt") as f:
        assert f.get_tensor("base_model.model.layers.0.q_proj.lora_B.weight").dtype.is_floating_point

    repo.checkout("other")
    assert not (repo.root / DATA).exists()
    assert not (repo.root / "targets").exists()  # emptied directories go too
    assert {p: sha256(repo.root / p) for p in second if p != DATA} == {p: h for p, h in second.items() if p != DATA}

    repo.checkout(main_commit[:10])  # detached
    assert repo.current_branch() is None and str(repo.head_commit().id) == main_commit
    assert {p: sha256(repo.root / p) for p in first} == first
    assert sha256_bytes(repo.read_file("other", ADAPTER)) == second[ADAPTER]
    assert git(repo.root, "fsck", "--full").returncode == 0
    assert repo.fsck().ok


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_same_adapter_again_adds_no_store_bytes(tmp_path):
    repo = new_repo(tmp_path)
    _bake_files(repo.root, seed=3)
    _commit_all(repo, "bake")
    objects, stored = store_files(repo), repo.store.stored_bytes()
    adapter_oid = str(repo.head_commit().tree[ADAPTER].id)

    repo.checkout("main", new_branch="retry")
    (repo.root / "notes.txt").write_text("same adapter, new note\n")
    _commit_all(repo, "note")
    staging = tmp_path / "staging"
    write_adapter(staging / "copy.safetensors", seed=3)  # identical bytes, another file
    repo.commit_files({ADAPTER: staging / "copy.safetensors"}, "bake again", replace_dirs=("adapter",))
    assert store_files(repo) == objects
    assert repo.store.stored_bytes() == stored
    assert str(repo.head_commit().tree[ADAPTER].id) == adapter_oid  # same manifest blob


def test_commit_files_lands_a_bake(tmp_path):
    repo = new_repo(tmp_path)
    _bake_files(repo.root, seed=4)
    (repo.root / "targets" / "old" ).mkdir()
    (repo.root / "targets" / "old" / "stim.jsonl").write_text('{"id": 1}\n')
    before = _commit_all(repo, "hand commit")
    staging = tmp_path / "staging"
    write_adapter(staging / "adapter_model.safetensors", seed=5)
    write_jsonl(staging / "rollout.jsonl", 50, seed=5)
    (staging / "bake.yml").write_text("base_model: {name: smollm2-135m}\n")
    new = repo.commit_files(
        {ADAPTER: staging / "adapter_model.safetensors", DATA: staging / "rollout.jsonl",
         "bake.yml": staging / "bake.yml"},
        "bake 2", replace_dirs=("targets", "adapter"))
    commit = repo.head_commit()
    assert str(commit.id) == new and [str(p) for p in commit.parent_ids] == [before]
    paths = set(git(repo.root, "ls-tree", "-r", "--name-only", "HEAD").stdout.split())
    assert paths == {"input.yml", "bake.yml", ADAPTER, DATA}  # adapter_config.json and targets/old dropped
    assert not (repo.root / "targets" / "old").exists()
    assert not (repo.root / "adapter" / "adapter_config.json").exists()
    assert sha256(repo.root / ADAPTER) == sha256(staging / "adapter_model.safetensors")
    assert repo.status().clean
    assert git(repo.root, "fsck", "--full").returncode == 0


def test_status_reports_changes_and_trusts_the_stat_cache(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    _bake_files(repo.root, seed=6)
    old = time.time() - 60
    for p in (ADAPTER, DATA):
        os.utime(repo.root / p, (old, old))
    _commit_all(repo, "bake")
    # unchanged payloads are not rehashed
    monkeypatch.setattr(status_module, "hash_file", lambda p: pytest.fail(f"rehashed {p}"))
    monkeypatch.setattr(repo.store, "store_file", lambda p: pytest.fail(f"restored {p}"))
    assert repo.status().clean
    repo.add([ADAPTER])
    monkeypatch.undo()

    data = bytearray((repo.root / ADAPTER).read_bytes())
    data[-1] ^= 1  # same size, different content
    (repo.root / ADAPTER).write_bytes(bytes(data))
    (repo.root / "input.yml").unlink()
    (repo.root / "new.txt").write_text("x\n")
    status = repo.status()
    assert [(c.path, c.kind) for c in status.modified] == [(ADAPTER, "modified"), ("input.yml", "deleted")]
    assert status.untracked == ["new.txt"] and status.staged == []
    repo.add([ADAPTER, "input.yml", "new.txt"])
    staged = {(c.path, c.kind) for c in repo.status().staged}
    assert staged == {(ADAPTER, "modified"), ("input.yml", "deleted"), ("new.txt", "added")}
    git_status = git(repo.root, "status", "--porcelain").stdout
    assert "D  input.yml" in git_status and "A  new.txt" in git_status


def test_payload_threshold_and_manifest_lookalikes(tmp_path):
    repo = new_repo(tmp_path)
    git(repo.root, "config", "bgit.threshold", "1k")
    (repo.root / "big.txt").write_text("y" * 2000)
    (repo.root / "small.txt").write_text("z" * 100)
    (repo.root / "fake.txt").write_text("bgit-manifest v1\n{not a manifest}\n")
    _commit_all(repo, "sizes")
    assert git(repo.root, "show", "HEAD:big.txt").stdout.startswith("bgit-manifest v1")
    assert git(repo.root, "show", "HEAD:small.txt").stdout == "z" * 100
    # a small file that merely looks like a manifest is wrapped, so it survives a checkout
    assert repo.read_file("HEAD", "fake.txt") == b"bgit-manifest v1\n{not a manifest}\n"
    for name in ("big.txt", "fake.txt"):
        (repo.root / name).unlink()
    repo.checkout("HEAD", force=True)
    assert repo.current_branch() == "main"
    assert (repo.root / "fake.txt").read_text() == "bgit-manifest v1\n{not a manifest}\n"
    assert (repo.root / "big.txt").read_text() == "y" * 2000


def test_checkout_refuses_to_overwrite_uncommitted_changes(tmp_path):
    repo = new_repo(tmp_path)
    _bake_files(repo.root, seed=7)
    _commit_all(repo, "one")
    repo.checkout("main", new_branch="two")
    _bake_files(repo.root, seed=8)
    (repo.root / "only-in-two.txt").write_text("two\n")
    _commit_all(repo, "two")
    repo.checkout("main")

    (repo.root / ADAPTER).write_bytes(b"local edit")
    (repo.root / "only-in-two.txt").write_text("untracked in the way\n")
    with pytest.raises(DirtyWorkTreeError) as error:
        repo.checkout("two")
    assert str(error.value) == (
        f"checkout would overwrite uncommitted changes: {ADAPTER}, only-in-two.txt (commit them or use --force)")
    assert repo.current_branch() == "main"
    assert (repo.root / ADAPTER).read_bytes() == b"local edit"  # nothing was touched

    # a change to a file both commits share is carried over, as in git
    (repo.root / "only-in-two.txt").unlink()
    repo.checkout("main", force=True)
    (repo.root / "input.yml").write_text("edited\n")
    repo.checkout("two")
    assert (repo.root / "input.yml").read_text() == "edited\n"

    repo.checkout("main", force=True)
    assert not (repo.root / "only-in-two.txt").exists()
    assert repo.status().clean


def test_branches_and_tags(tmp_path):
    repo = new_repo(tmp_path)
    with pytest.raises(UnknownRevisionError, match="unknown revision or path: 'nope'"):
        repo.create_branch("x", "nope")
    _commit_all(repo, "one")
    repo.create_branch("exp")
    assert [(b.name, b.current) for b in repo.branches()] == [("exp", False), ("main", True)]
    with pytest.raises(BranchError, match="already exists"):
        repo.create_branch("exp")
    with pytest.raises(BranchError, match="not a valid branch name"):
        repo.create_branch("bad..name")
    with pytest.raises(BranchError, match="cannot delete branch 'main': it is checked out"):
        repo.delete_branch("main")
    repo.delete_branch("exp")
    assert git(repo.root, "branch", "--list").stdout.split() == ["*", "main"]
    repo.create_tag("v1")
    repo.create_tag("v1-notes", "main", message="annotated")
    assert [t.name for t in repo.tags()] == ["v1", "v1-notes"]
    assert git(repo.root, "cat-file", "-t", "v1-notes").stdout.strip() == "tag"
    repo.checkout("v1-notes")
    assert repo.current_branch() is None
    with pytest.raises(UnknownRevisionError, match="unknown revision or path: 'xyz'"):
        repo.checkout("xyz")
    with pytest.raises(NothingToCommitError):
        repo.commit("empty")


def test_log_bake_summary_and_graph(tmp_path):
    from bgit import api
    from bgit.repo.history import graph_lines

    repo = new_repo(tmp_path)
    _commit_all(repo, "init")
    (repo.root / "bake.yml").write_text(
        "base_model: {name: smollm2-135m, fingerprint: abc}\ntargets: [yoda, french]\n"
        "metrics: {final_train_kl: 0.5, final_eval_kl: 0.0123}\n")
    _commit_all(repo, "bake")
    items = api.log(repo)
    assert [i.entry.summary for i in items] == ["bake", "init"]
    assert items[0].bake.text() == "bake: base smollm2-135m, targets yoda,french, KL 0.0123"
    assert items[1].bake is None
    entries = repo.log()
    assert entries[0].refs == ["HEAD -> main"]
    assert len(repo.log(n=1)) == 1

    # a merge made with plain git: the graph opens and closes a second line
    repo.checkout("HEAD~1", new_branch="side")
    (repo.root / "side.txt").write_text("side\n")
    _commit_all(repo, "side work")
    repo.checkout("main")
    git(repo.root, "-c", "user.name=t", "-c", "user.email=t@t", "merge", "--no-edit", "-q", "side")
    rows = graph_lines(repo.log())
    shapes = [p for p, e in rows]
    assert shapes[:2] == ["*", "|\\"] and sorted(shapes[2:4]) == ["* |", "| *"] and shapes[4:] == ["|/", "*"]
    by_summary = {e.summary: p for p, e in rows if e}
    assert by_summary["bake"] == "* |" and by_summary["side work"] == "| *"  # first parent stays left
    assert [e.summary for p, e in rows if e][::3] == ["Merge branch 'side'", "init"]


def test_fsck_names_the_file_of_a_bad_object_and_gc_keeps_reachable(tmp_path):
    repo = new_repo(tmp_path)
    first = _bake_files(repo.root, seed=9)
    _commit_all(repo, "keep")
    repo.checkout("main", new_branch="doomed")
    _bake_files(repo.root, seed=10)
    _commit_all(repo, "doomed")
    doomed_only = repo.reachable_object_ids()
    repo.checkout("main")
    repo.delete_branch("doomed")
    git(repo.root, "reflog", "expire", "--expire-unreachable=now", "--all")  # as git gc's roots, reflogs too
    reachable = repo.reachable_object_ids()
    doomed_only -= reachable
    assert doomed_only and doomed_only <= store_files(repo)

    assert repo.gc(grace_seconds=3600).removed_objects == 0  # too young to go
    report = repo.gc(grace_seconds=0)
    assert report.removed_objects == len(doomed_only)
    assert store_files(repo) == reachable
    repo.checkout("main", force=True)
    assert {p: sha256(repo.root / p) for p in first} == first

    manifest = repo.read_manifest("HEAD", DATA)
    victim = repo.store.object_path(sorted(manifest.object_ids())[0])
    os.chmod(victim, 0o644)
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    result = repo.fsck()
    assert not result.ok and len(result.problems) == 1
    short = str(repo.head_commit().id)[:8]
    assert f"{short}:{DATA}" in result.problems[0] and "is corrupt" in result.problems[0]


def _commit_raw_tree(repo: Repository, entries: list[tuple[bytes, bytes, str]], branch: str) -> None:
    """A commit whose tree is written byte for byte (so it may hold names git refuses)."""
    raw = b"".join(mode + b" " + name + b"\x00" + bytes.fromhex(oid) for mode, name, oid in entries)
    tree = repo.git.odb.write(pygit2.enums.ObjectType.TREE, raw)
    sig = pygit2.Signature("t", "t@t")
    head = repo.head_commit()
    commit = repo.git.create_commit(None, sig, sig, "crafted", tree, [head.id])
    repo.git.branches.local.create(branch, repo.git[commit])


def test_checkout_refuses_paths_that_escape_and_corrupt_manifests(tmp_path):
    repo = new_repo(tmp_path)
    _commit_all(repo, "init")
    blob = str(repo.git.create_blob(b"owned\n"))
    _commit_raw_tree(repo, [(b"100644", b"..", blob)], "evil")
    with pytest.raises(UnsafePathError, match="refusing unsafe path '..'"):
        repo.checkout("evil")
    _commit_raw_tree(repo, [(b"100644", b".git", blob)], "evil2")
    with pytest.raises(UnsafePathError):
        repo.checkout("evil2")
    assert repo.current_branch() == "main" and not (tmp_path / "owned").exists()

    garbage = str(repo.git.create_blob(b"bgit-manifest v1\n{\"kind\": \"safetensors\", \"size\": -1}\n"))
    inner = repo.git.TreeBuilder()
    inner.insert("adapter_model.safetensors", pygit2.Oid(hex=garbage), pygit2.enums.FileMode.BLOB)
    outer = repo.git.TreeBuilder(repo.head_commit().tree)
    outer.insert("adapter", inner.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("t", "t@t")
    bad = repo.git.create_commit(None, sig, sig, "bad manifest", outer.write(), [repo.head_commit().id])
    repo.git.branches.local.create("bad", repo.git[bad])
    with pytest.raises(CorruptManifestError) as error:
        repo.checkout("bad")
    assert str(error.value) == f"corrupted manifest at {str(bad)[:8]}:{ADAPTER}: size must be an integer >= 0"
    assert not (repo.root / "adapter").exists()
    fsck = repo.fsck()
    evil = str(repo.resolve("evil").id)[:8]
    assert f"commit {evil}: refusing unsafe path '..': escapes the work tree" in fsck.problems
    assert f"corrupted manifest at {str(bad)[:8]}:{ADAPTER}: size must be an integer >= 0" in fsck.problems
    assert len(fsck.problems) == 3


def test_signature_falls_back_without_identity(tmp_path, monkeypatch):
    repo = new_repo(tmp_path)
    monkeypatch.setattr(type(repo.git), "default_signature",
                        property(lambda self: (_ for _ in ()).throw(KeyError("user.name"))))
    _commit_all(repo, "anonymous")
    assert git(repo.root, "log", "-1", "--format=%an <%ae>").stdout.strip() == "bgit <bgit@localhost>"


def test_first_bake_lands_on_a_fresh_repository_and_detached_head(tmp_path):
    repo = new_repo(tmp_path)
    staging = tmp_path / "staging"
    write_adapter(staging / "adapter_model.safetensors", seed=11)
    (staging / "bake.yml").write_text("targets: [yoda]\n")
    first = repo.commit_files({ADAPTER: staging / "adapter_model.safetensors", "bake.yml": staging / "bake.yml",
                               "input.yml": repo.root / "input.yml"}, "first bake", replace_dirs=("adapter",))
    assert git(repo.root, "rev-parse", "main").stdout.strip() == first
    assert repo.status().clean
    assert sha256(repo.root / ADAPTER) == sha256(staging / "adapter_model.safetensors")

    repo.checkout(first)  # detached: commits move HEAD itself
    (repo.root / "x.txt").write_text("x\n")
    repo.add(["x.txt"])
    second = repo.commit("on a detached head")
    assert git(repo.root, "rev-parse", "HEAD").stdout.strip() == second
    assert git(repo.root, "rev-parse", "main").stdout.strip() == first
    with pytest.raises(UnsafePathError):
        repo.commit_files({"../escape.txt": staging / "bake.yml"}, "nope")
    assert git(repo.root, "rev-parse", "HEAD").stdout.strip() == second
