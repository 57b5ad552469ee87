"""The phase cache and the training-data composition (no models involved)."""

from collections import Counter


from bgit.pipeline.dataset import compose_mix, split_by_stim
from bgit.pipeline.phases import PhaseCache, PhaseKey


def rows(n_stims, trajs=1, prefix="s"):
    return [{"stim_id": f"{prefix}{i}", "traj": t} for i in range(n_stims) for t in range(trajs)]


def test_split_holds_out_whole_stims():
    data = rows(10, trajs=3)
    train, held_out = split_by_stim(data, 0.8, seed=1)
    assert len(train) == 24 and len(held_out) == 6
    assert not {r["stim_id"] for r in train} & {r["stim_id"] for r in held_out}
    assert split_by_stim(data, 0.8, seed=1) == (train, held_out)
    assert split_by_stim(data, 0.8, seed=2) != (train, held_out)


def test_split_keeps_one_stim_each_side_when_possible():
    train, held_out = split_by_stim(rows(2), 0.9, seed=0)
    assert len(train) == 1 and len(held_out) == 1
    train, held_out = split_by_stim(rows(3), 1.0, seed=0)
    assert len(train) == 3 and held_out == []


def test_mix_follows_weights_and_total():
    parts = {"a": rows(10, prefix="a"), "b": rows(10, prefix="b")}
    mix = compose_mix(parts, {"a": 0.7, "b": 0.3}, total=40, seed=0)
    counts = Counter(name for name, _ in mix)
    assert counts == {"a": 28, "b": 12}
    # a target asked for more than it has is cycled through evenly
    a_ids = Counter(row["stim_id"] for name, row in mix if name == "a")
    assert set(a_ids.values()) <= {2, 3}


def test_mix_with_equal_weights_and_no_total_is_everything():
    parts = {"a": rows(3, prefix="a"), "b": rows(5, prefix="b")}
    mix = compose_mix(parts, {"a": 1.0, "b": 1.0}, total=None, seed=0)
    assert sorted(r["stim_id"] for _, r in mix) == sorted(r["stim_id"] for p in parts.values() for r in p)


def test_phase_key_depends_on_exactly_its_inputs():
    a = PhaseKey.of("rollout", stim="x", sampling={"temperature": 1.0, "max_tokens": 8})
    b = PhaseKey.of("rollout", sampling={"max_tokens": 8, "temperature": 1.0}, stim="x")
    c = PhaseKey.of("rollout", stim="x", sampling={"temperature": 0.7, "max_tokens": 8})
    assert a.key == b.key != c.key
    assert PhaseKey.of("train", stim="x").key != PhaseKey.of("rollout", stim="x").key


def test_phase_is_visible_only_once_finished(tmp_path):
    cache = PhaseCache(tmp_path)
    key = PhaseKey.of("stim", seed=1)
    tmp = cache.begin(key)
    (tmp / "stim.jsonl").write_text("{}\n")
    assert cache.get(key) is None
    final = cache.finish(key, tmp, digest="d", count=1)
    assert cache.get(key) == final and not tmp.exists()
    assert cache.record_at(final)["digest"] == "d"


def test_leftovers_of_dead_processes_are_cleaned(tmp_path):
    cache = PhaseCache(tmp_path)
    key = PhaseKey.of("stim", seed=1)
    dead = tmp_path / "stim" / f"{key.key}.tmp-999999999-1"
    dead.mkdir(parents=True)
    mine = cache.begin(key)  # this process is alive: kept
    assert cache.clean_temporaries() == 1
    assert not dead.exists() and mine.exists()
