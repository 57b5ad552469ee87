"""From rollout rows to the trainer's examples: held-out split, weighted mix, tokenisation."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from bgit.config.schema import BakeConfig, InputConfig
from bgit.errors import BgitError
from bgit.record import RolloutRecord, read_jsonl


@dataclass
class TargetRows:
    name: str
    rows: list[dict]          # rollout rows (docs/contracts.md)
    student_messages: list[dict]
    teacher_messages: list[dict]
    teacher_tools: list[dict] | None


def split_by_stim(rows: list[dict], train_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split rollout rows into train and eval so that no stim is in both.

    Eval stims are *held out*: a model is judged on user messages it never trained on.
    With at least two stims and a fraction below 1, eval gets at least one stim.
    """
    stim_ids = sorted({row["stim_id"] for row in rows})
    random.Random(seed).shuffle(stim_ids)
    n_train = len(stim_ids) if train_fraction >= 1 else math.floor(len(stim_ids) * train_fraction)
    if train_fraction < 1 and len(stim_ids) >= 2:
        n_train = min(max(n_train, 1), len(stim_ids) - 1)
    train_ids = set(stim_ids[:n_train])
    train = [row for row in rows if row["stim_id"] in train_ids]
    held_out = [row for row in rows if row["stim_id"] not in train_ids]
    return train, held_out


def compose_mix(per_target: dict[str, list[dict]], weights: dict[str, float],
                total: int | None, seed: int) -> list[tuple[str, dict]]:
    """Draw the training mix: target t gets round(N·w_t/Σw) trajectories.

    N is ``total`` (BAKE.total_trajectories) or, by default, every available trajectory.
    With equal weights and no total the mix is simply everything. A target asked for more
    trajectories than it has is cycled through (each pass freshly shuffled).
    """
    rng = random.Random(seed)
    names = [name for name in weights if weights[name] > 0]
    available = sum(len(per_target[name]) for name in names)
    if total is None and len({weights[n] for n in names}) <= 1:
        return [(name, row) for name in names for row in per_target[name]]
    n_total = total if total is not None else available
    weight_sum = sum(weights[name] for name in names)
    mix: list[tuple[str, dict]] = []
    for name in names:
        want = round(n_total * weights[name] / weight_sum)
        pool = per_target[name]
        drawn: list[dict] = []
        while pool and len(drawn) < want:
            order = pool[:]
            rng.shuffle(order)
            drawn.extend(order[: want - len(drawn)])
        mix.extend((name, row) for row in drawn)
    rng.shuffle(mix)
    return mix


def dataset_weights(bake: BakeConfig, target_names: list[str]) -> dict[str, float]:
    if not bake.datasets:
        return {name: 1.0 for name in target_names}
    return {entry.target: float(entry.weight) for entry in bake.datasets}


def to_examples(tokenizer, pairs: list[tuple[str, dict]], targets: dict[str, TargetRows],
                with_teacher_ids: bool):
    """Trainer examples; contexts are rendered once per (target, stim)."""
    from bgit.models import render_context
    from bgit.train import TrainExample

    rendered: dict[tuple[str, str, str], list[int]] = {}

    def context(target: TargetRows, who: str, stim: str) -> list[int]:
        cache_key = (target.name, who, stim)
        if cache_key not in rendered:
            messages = target.student_messages if who == "student" else target.teacher_messages
            tools = target.teacher_tools if who == "teacher" else None
            rendered[cache_key] = render_context(tokenizer, messages, user=stim, tools=tools)
        return rendered[cache_key]

    examples = []
    for name, row in pairs:
        target = targets[name]
        record = RolloutRecord.from_row(row)
        examples.append(TrainExample(
            student_ids=context(target, "student", row["stim"]),
            response_ids=record.response_ids.tolist(),
            topk_ids=record.topk_ids,
            topk_logprobs=record.topk_logprobs,
            tail_logprob=record.tail_logprob,
            teacher_ids=context(target, "teacher", row["stim"]) if with_teacher_ids else None,
        ))
    return examples


@dataclass
class TrainingData:
    train: list                 # TrainExample, the weighted mix
    held_out: list              # TrainExample of the held-out stims (eval KL during training)
    eval_stims: dict[str, list[str]] = field(default_factory=dict)   # target -> held-out stim ids


def training_data(config: InputConfig, rollout_dirs: dict[str, Path], tokenizer) -> TrainingData:
    """Rollout phases -> the trainer's examples: held-out split per target, weighted mix."""
    bake = config.bake
    targets, train_parts, eval_pairs, eval_stims = {}, {}, [], {}
    for name, path in rollout_dirs.items():
        prompt = config.prompt_for(config.target(name))
        rows = read_jsonl(path / "rollout.jsonl")
        targets[name] = TargetRows(name, rows, prompt.student_messages, prompt.teacher_messages, prompt.teacher_tools)
        train_parts[name], eval_rows = split_by_stim(rows, bake.data.train_eval_split, bake.data.seed)
        eval_pairs.extend((name, row) for row in eval_rows)
        eval_stims[name] = sorted({row["stim_id"] for row in eval_rows})
    mix = compose_mix(train_parts, dataset_weights(bake, list(rollout_dirs)), bake.total_trajectories, bake.data.seed)
    if not mix:
        raise BgitError("no training trajectories: add stims or raise BAKE.data.train_eval_split")
    full = bake.loss == "full"
    return TrainingData(to_examples(tokenizer, mix, targets, with_teacher_ids=full),
                        to_examples(tokenizer, eval_pairs, targets, with_teacher_ids=full), eval_stims)
