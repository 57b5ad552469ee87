"""bgit.api: the library under the CLI, driven alone (no click), on real repositories."""

from __future__ import annotations

import json

import pytest

from bgit import api
from bgit.repo import Repository
from bgit.repo.errors import MissingObjectError
from repo_helpers import git, sha256, write_adapter, write_jsonl

ADAPTER = "adapter/adapter_model.safetensors"
ROLLOUT = "targets/yoda/rollout.jsonl"


def _bake_like(root, seed: int) -> dict[str, str]:
    write_adapter(root / ADAPTER, seed=seed, rows=4096)
    write_jsonl(root / ROLLOUT, 200, seed=seed)
    return {path: sha256(root / path) for path in (ADAPTER, ROLLOUT)}


def test_init_commit_log_and_results_are_typed(tmp_path):
    init = api.init(tmp_path / "repo")
    assert init.example == "yoda" and (init.root / "input.yml").is_file()
    assert set(init.hooks) == {"pre-bake", "post-bake", "pre-push"}
    assert api.validate(init.root / "input.yml").ok
    assert api.log(init.root) == []  # no commits yet: an empty history, not an error
    _bake_like(init.root, 1)
    api.add(init.root, all=True)
    result = api.commit(init.root, "first")
    assert result.branch == "main" and git(init.root, "rev-parse", "HEAD").stdout.strip() == result.commit
    (item,) = api.log(init.root)
    assert item.entry.summary == "first" and item.bake is None and item.eval is None
    assert json.loads(json.dumps(item.to_json()))["id"] == result.commit
    assert api.status(init.root).clean


def test_clone_then_lazy_checkout_of_an_older_bake_through_the_api_alone(tmp_path):
    origin = tmp_path / "origin.git"
    a = api.init(tmp_path / "a").root
    first = _bake_like(a, 1)
    api.add(a, all=True)
    api.commit(a, "bake 1")
    second = _bake_like(a, 2)
    api.add(a, all=True)
    api.commit(a, "bake 2")
    api.remote_add(a, "origin", str(origin))
    assert api.push(a, "origin").updated

    clone = api.clone(str(origin), tmp_path / "b")
    assert sha256(clone.root / ADAPTER) == second[ADAPTER]
    older = Repository.open(clone.root).resolve("HEAD~1")
    needed = Repository.open(clone.root).read_manifest(str(older.id), ADAPTER).object_ids()
    needed -= Repository.open(clone.root).read_manifest("HEAD", ADAPTER).object_ids()
    assert needed and not any(clone.store.has(oid) for oid in needed)  # only what HEAD needs came
    with pytest.raises(MissingObjectError):  # a bare Repository has no remote access ...
        Repository.open(clone.root).checkout("HEAD~1")
    result = api.checkout(clone.root, "HEAD~1")   # ... the api fetches what the checkout needs
    assert result.branch is None and result.commit == str(older.id)
    assert {p: sha256(clone.root / p) for p in first} == first
    assert all(clone.store.has(oid) for oid in needed)
    assert api.fsck(clone.root).ok
    assert [i.entry.summary for i in api.log(clone.root, "main")] == ["bake 2", "bake 1"]


def test_gc_keeps_what_commits_need_and_remote_remove_forgets(tmp_path):
    root = api.init(tmp_path / "repo").root
    _bake_like(root, 3)
    api.add(root, all=True)
    api.commit(root, "keep")
    result = api.gc(root, grace_seconds=0, phase_days=0)
    assert result.store.removed_objects == 0 and result.store.kept_objects > 0
    assert api.fsck(root).ok
    api.remote_add(root, "origin", str(tmp_path / "o.git"))
    assert [r.name for r in api.remote_list(root)] == ["origin"]
    api.remote_remove(root, "origin")
    assert api.remote_list(root) == []
    assert git(root, "remote").stdout.strip() == ""
