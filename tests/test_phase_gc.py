"""`bgit gc` and the phase cache: phases a running bake uses are pinned, and gc keeps them.

A bake in progress holds no repository lock while it computes (hours, on a GPU), so gc can
run meanwhile; the pins (``.git/bgit/phases/pins/<pid>-<id>.json``) tell it which cached
phases are in use. The tests pin from real, separate processes and kill them for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bgit.api import GcResult, gc
from bgit.pipeline.phases import PINS, PhaseCache, PhaseKey, live_pinned_keys
from bgit.repo import Repository
from repo_helpers import REPO_ROOT, assert_nothing_lost, bgit_subprocess, new_repo, snapshot

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
MONTH_AGO = time.time() - 30 * 86400

PINNER = """
import sys, time
from bgit.pipeline.phases import PhaseCache, PhaseKey
cache = PhaseCache(sys.argv[1])
keys = [PhaseKey.of("train", name=n) for n in ("pinned", "looked-up", "resumed")]
with cache.pinned([keys[0]]):
    assert cache.get(keys[1]) is not None   # a cached phase the bake reuses
    cache.work_dir(keys[2])                  # a training run it resumes
    print("pinned", flush=True)
    time.sleep(600)
"""


def _phase(cache: PhaseCache, name: str) -> Path:
    key = PhaseKey.of("train", name=name)
    tmp = cache.begin(key)
    (tmp / "adapter").mkdir()
    (tmp / "adapter" / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    path = cache.finish(key, tmp, digest=name)
    os.utime(path, (MONTH_AGO, MONTH_AGO))
    return path


def _bake_commit(repo: Repository, referenced: PhaseKey) -> dict[str, dict[str, str]]:
    (repo.root / "bake.yml").write_text(f"phase_keys:\n  stim: {{}}\n  rollout: {{}}\n  train: {referenced.key}\n")
    repo.add(all=True)
    commit = repo.commit("a bake")
    return {commit: snapshot(repo)}


def test_gc_keeps_phases_a_running_process_pinned_until_it_dies(tmp_path):
    repo = new_repo(tmp_path)
    cache = PhaseCache(repo.bgit_dir / "phases")
    paths = {name: _phase(cache, name) for name in ("committed", "pinned", "looked-up", "unused")}
    resumed = cache.root / "train" / (PhaseKey.of("train", name="resumed").key + ".work")
    commits = _bake_commit(repo, PhaseKey.of("train", name="committed"))
    pinner = subprocess.Popen([sys.executable, "-c", PINNER, str(cache.root)], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert pinner.stdout.readline() == "pinned\n"
        os.utime(resumed, (MONTH_AGO, MONTH_AGO))
        result = bgit_subprocess(repo.root, "gc", "--grace", "0", "--phase-days", "0", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert (report["removed_phases"], report["kept_pinned_phases"]) == (1, 3)
        assert [n for n, p in paths.items() if not p.exists()] == ["unused"]
        assert resumed.is_dir()
        text = bgit_subprocess(repo.root, "gc", "--grace", "0", "--phase-days", "0").stdout
        assert text.endswith("that no commit uses; kept 3 in use by a running bake\n")
    finally:
        pinner.send_signal(signal.SIGKILL)
        pinner.wait()
    assert len(list((cache.root / PINS).glob("*.json"))) == 1  # a killed process cannot clean up...
    result = gc(Repository.open(repo.root), grace_seconds=0, phase_days=0)  # ...so gc ignores its pin
    assert isinstance(result, GcResult)
    assert (result.removed_phases, result.kept_pinned_phases) == (3, 0)
    assert list((cache.root / PINS).glob("*.json")) == []
    assert sorted(p.name for p in (cache.root / "train").iterdir()) == [PhaseKey.of("train", name="committed").key]
    assert set(result.to_json()) >= {"removed_objects", "removed_phases", "removed_phase_bytes", "kept_pinned_phases"}
    assert_nothing_lost(repo.root, commits)


def test_a_pin_lasts_as_long_as_its_context_and_its_process(tmp_path):
    cache = PhaseCache(tmp_path / "phases")
    key = PhaseKey.of("stim", seed=1)
    with cache.pinned([key]) as pin:
        assert live_pinned_keys(cache.root / PINS) == {key.key}
        later = PhaseKey.of("rollout", seed=2)
        cache.begin(later)  # keys the cache touches join the pin
        assert live_pinned_keys(cache.root / PINS) == {key.key, later.key}
        assert pin.file.exists()
    assert list((cache.root / PINS).glob("*.json")) == []
    # a pin whose pid now belongs to another process (started at another time) pins nothing
    reused = cache.root / PINS / f"{os.getpid()}-forged.json"
    reused.write_text(json.dumps({"pid": os.getpid(), "started": 1, "keys": [key.key]}))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = cache.root / PINS / f"{dead.stdout.strip()}-gone.json"
    gone.write_text(json.dumps({"pid": int(dead.stdout), "started": None, "keys": [key.key]}))
    (cache.root / PINS / "garbage.json").write_text("{not json")
    assert live_pinned_keys(cache.root / PINS) == set()
    assert not reused.exists() and not gone.exists()


PIN_WHEN_TOLD = """
import sys, time
from bgit.pipeline.phases import PhaseCache, PhaseKey
cache = PhaseCache(sys.argv[1])
with cache.pinned():
    print("ready", flush=True)
    sys.stdin.readline()
    found = cache.get(PhaseKey.of("train", name="old")) is not None
    print("found" if found else "gone", flush=True)
"""


def test_a_pin_taken_while_gc_decides_waits_for_gc_then_sees_the_truth(tmp_path):
    """gc holds the pins lock exclusively from reading the pins to renaming what it deletes;
    a bake pinning meanwhile waits, then finds the phase gone and recomputes it -- it never
    gets a directory that is being deleted under it."""
    from bgit.pipeline.phases import _pins_lock
    import fcntl

    cache = PhaseCache(tmp_path / "phases")
    old = _phase(cache, "old")
    proc = subprocess.Popen([sys.executable, "-c", PIN_WHEN_TOLD, str(cache.root)], env=ENV, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == "ready\n"
        with _pins_lock(cache.root / PINS, fcntl.LOCK_EX):  # what prune holds while it decides
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(0.5)
            assert proc.poll() is None and live_pinned_keys(cache.root / PINS) == set()  # still waiting
            os.rename(old, old.with_name(old.name + f".tmp-{os.getpid()}-1-gc"))
        assert proc.stdout.readline() == "gone\n"
    finally:
        proc.kill()
        proc.wait()


HOSTILE_RECORDS = [
    "[1, 2, 3]\n",                                 # not a mapping
    "phase_keys: oops\n",                          # phase_keys not a mapping
    "phase_keys: {train: [a, b], stim: 7}\n",      # values of the wrong types
    "phase_keys: {stim: {t: {deeper: x}}}\n",
    "key: [unclosed\n",                            # malformed YAML
    "a: &a [x, x]\nb: [*a, *a, *a]\n",            # aliases
    "x" * (5 << 20) + ": 1\n",                     # over the size bound
]


def test_gc_survives_hostile_bake_records(tmp_path):
    """bake.yml comes from commits anyone may have made (plain git, a fetched branch): gc
    reads it within bounds and ignores what is not a bake record."""
    repo = new_repo(tmp_path)
    cache = PhaseCache(repo.bgit_dir / "phases")
    kept, dropped = _phase(cache, "kept"), _phase(cache, "dropped")
    commits = {}
    for i, text in enumerate(HOSTILE_RECORDS):
        (repo.root / "bake.yml").write_text(text)
        subprocess.run(["git", "add", "bake.yml"], cwd=repo.root, check=True)  # plain git: a blob, any size
        commit = repo.commit(f"hostile record {i}")
        commits[commit] = snapshot(repo)
    commits.update(_bake_commit(repo, PhaseKey.of("train", name="kept")))
    result = bgit_subprocess(repo.root, "gc", "--grace", "0", "--phase-days", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["removed_phases"] == 1
    assert kept.exists() and not dropped.exists()
    assert_nothing_lost(repo.root, commits)
