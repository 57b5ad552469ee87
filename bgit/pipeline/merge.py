"""Merging bakes (``bgit merge``): input.yml merged key by key, the other files path by path,
then one of three ways to finish, each a commit with both parents:

    train      (default) the merged input.yml is baked. Every target's stim and rollout phase
               comes from the phase cache (or, when this cache lacks it, from the side's commit:
               targets/<name>/*.jsonl stored under the key its bake.yml names), since those keys
               depend only on the target's own config, MODEL.base, BAKE.seed and BAKE.parent;
               so only training runs. With BAKE.parent: head the merged bake builds on the merge
               base's bake, which both sides' bakes were trained on top of.
    weights    the two adapters combined without training (bgit.evaluate.combine); bake.yml
               says how (merge: {strategy: weights, combination, weights, density, seed}).
    none       (--no-bake) the merged config alone: input.yml, both sides' targets/ datasets and
               other files, and no adapter/, bake.yml or metrics.jsonl: it is not a bake. `bgit
               bake` afterwards trains the union with the same cache hits.
    files      when neither side is a bake (no bake.yml): every file merged as git merges them
               (input.yml still key by key), nothing left out, nothing trained.

A conflict (a key of input.yml, or a file changed differently on both sides) stops the merge
with git's state (MERGE_HEAD, conflict stages, markers in input.yml); `bgit merge --continue`
finishes it after the edit, `bgit merge --abort` restores the state before it. A bake that
fails or is interrupted leaves the merge in progress, so --continue resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bgit.config import load_config
from bgit.config.merge import conflict_marker_line, merge_config_text
from bgit.errors import BgitError
from bgit.evaluate import EvalResult, read_eval, read_record
from bgit.pipeline.bake import Baker, BakeResult, PhaseOutcome
from bgit.pipeline.phases import PhaseCache
from bgit.record import ADAPTER_DIR, BAKE_RECORD, INPUT_YML, METRICS, TARGETS_DIR, rollout_path, stim_path
from bgit.repo.merge import (MergeState, TreeMerge, begin_merge, clear_state, fast_forward, merge_base, read_state,
                             stage_resolution, three_way, unmerged_paths)
from bgit.repo.errors import (MergeError, MergeInProgressError, NoCommitsError, NoMergeInProgressError,
                              UnmergedPathsError)
from bgit.repo.sync import ensure_payloads
from bgit.repo.trees import Entry
from bgit.util.progress import SILENT, Reporter

STRATEGIES = ("train", "weights", "none", "files")
BAKE_FILES = (ADAPTER_DIR, BAKE_RECORD, METRICS)   # made anew by the merge (or left out)


class MergeConflictError(BgitError):
    pass


@dataclass
class MergeOptions:
    strategy: str = "train"
    combination: str = "linear"
    weights: tuple[float, float] = (0.5, 0.5)
    density: float | None = None
    seed: int = 0

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "combination": self.combination, "weights": list(self.weights),
                "density": self.density, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict) -> "MergeOptions":
        weights = data.get("weights") or (0.5, 0.5)
        return cls(data.get("strategy", "train"), data.get("combination", "linear"),
                   (float(weights[0]), float(weights[1])), data.get("density"), int(data.get("seed", 0)))


@dataclass
class MergeOutcome:
    kind: str                       # up-to-date | fast-forward | conflict | merged
    theirs: str
    commit: str | None = None       # HEAD afterwards
    strategy: str = "train"
    conflicts: list[str] = field(default_factory=list)          # paths
    config_conflicts: list[str] = field(default_factory=list)   # input.yml keys
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    eval: EvalResult | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "theirs": self.theirs, "commit": self.commit, "strategy": self.strategy,
                "conflicts": self.conflicts, "config_conflicts": self.config_conflicts,
                "phases": [vars(o) for o in self.outcomes], "eval": self.eval.to_json() if self.eval else None}


def default_message(repo, ref: str) -> str:
    if repo.git.branches.local.get(ref) is not None:
        return f"Merge branch '{ref}'"
    if repo.git.references.get(f"refs/remotes/{ref}") is not None:
        return f"Merge remote-tracking branch '{ref}'"
    return f"Merge commit '{ref}'"


def start_merge(repo, ref: str, options: MergeOptions, message: str | None = None,
                reporter: Reporter = SILENT) -> MergeOutcome:
    """Merge ``ref`` into HEAD: up to date, fast-forward, a conflict to resolve, or merged."""
    if options.strategy not in STRATEGIES[:3]:
        raise MergeError(f"unknown merge strategy '{options.strategy}' (train, weights or none)")
    if read_state(repo) is not None:
        raise MergeInProgressError()
    ours, theirs = repo.head_commit(), repo.resolve(ref)
    if ours is None:
        raise NoCommitsError(repo.current_branch() or "HEAD")
    outcome = MergeOutcome("up-to-date", str(theirs.id), str(ours.id), options.strategy)
    if ours.id == theirs.id or repo.git.descendant_of(ours.id, theirs.id):
        return outcome
    if repo.git.descendant_of(theirs.id, ours.id):
        fast_forward(repo, theirs, ref)
        return MergeOutcome("fast-forward", str(theirs.id), str(theirs.id), options.strategy)
    base = merge_base(repo, ours, theirs)
    if base is None:
        raise MergeError(f"refusing to merge unrelated histories ('{ref}' shares no commit with HEAD)")
    if options.strategy == "train" and not any(repo.read_file(str(c.id), BAKE_RECORD) for c in (ours, theirs)):
        options.strategy = "files"   # neither side is a bake: a merge of files, as git makes
    if options.strategy == "weights":
        from bgit.pipeline.merge_weights import check_weights_merge
        check_weights_merge(repo, str(ours.id), str(theirs.id), options)
    merged, writes, keys = plan_tree(repo, base, ours, theirs, options.strategy, ref)
    state = MergeState(str(ours.id), str(theirs.id), message or default_message(repo, ref),
                       {**options.to_dict(), "base": str(base.id), "theirs_ref": ref})
    conflicts = begin_merge(repo, state, merged, writes, labels=("HEAD", ref))
    if conflicts:
        return MergeOutcome("conflict", str(theirs.id), str(ours.id), options.strategy, conflicts, keys)
    return finish_merge(repo, reporter)


def plan_tree(repo, base, ours, theirs, strategy: str, label: str) -> tuple[TreeMerge, dict, list[str]]:
    """The merged tree without the bake's own files (and, for train, without targets/, which
    the bake writes), input.yml merged key by key. -> (merge, {path: bytes}, conflicting keys)."""
    dropped = () if strategy == "files" else BAKE_FILES + ((TARGETS_DIR,) if strategy == "train" else ())
    trees = [_without(repo.tree_entries(c), dropped) for c in (base, ours, theirs)]
    merged = three_way(*trees)
    writes, keys = {}, []
    if INPUT_YML in merged.conflicts:
        sides = merged.conflicts[INPUT_YML]
        texts = [None if e is None else repo.blob_data(e.oid).decode("utf-8") for e in sides]
        config = merge_config_text(*texts, labels=("HEAD", label))
        if config.text is None:
            del merged.conflicts[INPUT_YML]
        else:
            writes[INPUT_YML] = config.text.encode("utf-8")
            keys = config.conflicts
            if config.clean:
                del merged.conflicts[INPUT_YML]
    return merged, writes, keys


def _without(entries: dict[str, Entry], prefixes) -> dict[str, Entry]:
    return {p: e for p, e in entries.items() if not any(p == d or p.startswith(d + "/") for d in prefixes)}


def finish_merge(repo, reporter: Reporter = SILENT) -> MergeOutcome:
    """Resolve input.yml from the work tree, then bake / combine / commit the merge."""
    state = read_state(repo)
    if state is None:
        raise NoMergeInProgressError()
    _resolve_config(repo)
    remaining = unmerged_paths(repo)
    if remaining:
        raise UnmergedPathsError(remaining)
    options = MergeOptions.from_dict(state.options)
    outcome = MergeOutcome("merged", state.theirs, None, options.strategy)
    if options.strategy in ("train", "weights"):  # what the merge reads of each side (a clone may lack it)
        needed = (TARGETS_DIR,) if options.strategy == "train" else (TARGETS_DIR, ADAPTER_DIR)
        for commit in (state.head, state.theirs):
            ensure_payloads(repo, repo.resolve(commit), needed)
    if options.strategy in ("none", "files"):
        outcome.commit = repo.commit_files({}, state.message, parents=[state.theirs])
    elif options.strategy == "weights":
        from bgit.pipeline.merge_weights import commit_combined
        outcome.commit = commit_combined(repo, state, options, reporter)
    else:
        result = bake_union(repo, state, reporter)
        outcome.commit, outcome.outcomes = result.commit, result.outcomes
    clear_state(repo)
    outcome.eval = read_eval(repo, outcome.commit)
    return outcome


def _resolve_config(repo) -> None:
    """An unmerged input.yml is taken from the work tree once its markers are gone."""
    if INPUT_YML not in unmerged_paths(repo):
        return
    path = repo.root / INPUT_YML
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MergeConflictError(f"{INPUT_YML} is missing: write the merged config, then "
                                 "'bgit merge --continue'") from None
    line = conflict_marker_line(data.decode("utf-8", errors="replace"))
    if line is not None:
        raise MergeConflictError(f"{INPUT_YML}:{line}: conflict markers are still there: edit the file, "
                                 "then 'bgit merge --continue' (or 'bgit merge --abort')")
    load_config(path)   # a config a bake would reject is reported now, with FILE:LINE
    stage_resolution(repo, INPUT_YML, data)


# -- train: the bake of the union ------------------------------------------------------------

def bake_union(repo, state: MergeState, reporter: Reporter = SILENT) -> BakeResult:
    config_path = repo.root / INPUT_YML
    config = load_config(config_path)
    parent_at = state.options.get("base") if config.bake.parent == "head" else None
    baker = Baker(repo, config, reporter=reporter, config_dir=config_path.parent, parent_at=parent_at)
    seed_phases(repo, baker, [state.head, state.theirs])
    merge = {"strategy": "train", "ours": state.head, "theirs": state.theirs, "base": state.options.get("base")}
    return baker.bake(message=state.message, force=True, parents=[state.theirs], merge=merge)


def seed_phases(repo, baker: Baker, commits: list[str]) -> list[str]:
    """Stim and rollout phases this cache lacks, taken from a side's commit when the key its
    bake.yml names is the key the merged config computes (the same inputs); -> labels seeded."""
    runner, seeded = baker.runner, []
    records = [(c, read_record(repo, repo.resolve(c))) for c in commits]
    for target in runner.trained_targets():
        stim_dir = runner.cache.get(runner.stim_key(target))
        if stim_dir is None:
            stim_dir = _seed(repo, runner.cache, runner.stim_key(target), records, target.name, "stim")
            seeded += [f"stim[{target.name}]"] if stim_dir else []
        if stim_dir is None:
            continue
        key = runner.rollout_key(target, stim_dir)
        if runner.cache.get(key) is None and _seed(repo, runner.cache, key, records, target.name, "rollout"):
            seeded.append(f"rollout[{target.name}]")
    for label in seeded:
        baker.reporter.message(f"{label}: taken from a merged commit (not in this phase cache)")
    return seeded


def _seed(repo, cache: PhaseCache, key, records, target: str, phase: str):
    from bgit.record import read_jsonl
    from bgit.util.files import hash_file, write_atomic

    path = stim_path(target) if phase == "stim" else rollout_path(target)
    for commit, record in records:
        if record is None or getattr(record.phase_keys, phase).get(target) != key.key:
            continue
        data = repo.read_file(commit, path)
        if data is None:
            continue
        tmp = cache.begin(key)
        name = f"{phase}.jsonl"
        write_atomic(tmp / name, data)
        rows = read_jsonl(tmp / name)
        tokens = sum(len(r.get("response_ids") or []) for r in rows) if phase == "rollout" else 0
        return cache.finish(key, tmp, hash_file(tmp / name), count=len(rows), tokens=tokens, seconds=0.0,
                            seeded_from=commit)
    return None
