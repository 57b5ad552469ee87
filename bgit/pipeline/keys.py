"""Phase keys: each phase is keyed by the hash of exactly its inputs (DESIGN §3.3).

    stim     generator configs (+ content digest of from_dataset files; + teacher prompt and the
             writer model's fingerprint only for model-written generators, which read ${prompt_u}),
             seed, TARGET.augment (+ the digest of the bundled messages) when it is on
    rollout  stim digest, teacher prompt and tools, parent fingerprint, sampling params, K, seed
    train    rollout digests, student prompts (teacher prompts too for loss=full), every BAKE
             setting but its name, parent fingerprint, the number of training processes when
             more than one

So changing only the learning rate re-runs only training, and a new teacher prompt re-runs
rollout (and stim only when a generator reads the prompt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from bgit.config import config_to_dict
from bgit.config.schema import InputConfig, PromptConfig, TargetConfig
from bgit.pipeline.augment import messages_digest
from bgit.pipeline.phases import PhaseKey
from bgit.util.files import hash_file, hash_tree

MODEL_WRITTEN = ("oneshot_qs", "persona")


def prompt_inputs(prompt: PromptConfig, *, teacher: bool = False, student: bool = False) -> dict:
    inputs = {}
    if teacher:
        inputs["teacher"] = {"messages": prompt.teacher_messages, "tools": prompt.teacher_tools}
    if student:
        inputs["student"] = prompt.student_messages
    return inputs


def data_digest(path: Path) -> str:
    return hash_tree(path) if path.is_dir() else hash_file(path)


def stim_key(config: InputConfig, target: TargetConfig, *, fingerprint: Callable[[str], str],
             data_path: Callable[[str], Path]) -> PhaseKey:
    """``fingerprint(model name)`` and ``data_path(configured path)`` come from the caller, which
    owns model resolution and the rules for files a config may name."""
    generators, models, reads_prompt = [], {}, False
    for generator in target.generators:
        entry = config_to_dict(generator)
        if generator.type == "from_dataset" and generator.path:
            entry["data_digest"] = data_digest(data_path(generator.path))
        if generator.type in MODEL_WRITTEN:
            name = generator.model or config.model.base
            models[name] = fingerprint(name)
            reads_prompt = True
        generators.append(entry)
    augment = {}
    if target.augment.min_stims:  # bgit's bundled messages are an input too (augment.py)
        augment = {"augment": {"min_stims": target.augment.min_stims, "messages": messages_digest()}}
    return PhaseKey.of("stim", generators=generators, models=models, seed=config.bake.seed, **augment,
                       **prompt_inputs(config.prompt_for(target), teacher=reads_prompt))


def rollout_key(config: InputConfig, target: TargetConfig, stim_digest: str, parent: str) -> PhaseKey:
    sampling = {"max_tokens": target.max_tokens, "temperature": target.temperature,
                "num_traj_per_stimulus": target.num_traj_per_stimulus, "top_k": target.top_k}
    return PhaseKey.of("rollout", stim=stim_digest, parent=parent, sampling=sampling, seed=config.bake.seed,
                       **prompt_inputs(config.prompt_for(target), teacher=True))


def train_key(config: InputConfig, rollout_digests: dict[str, str], parent: str, world: int = 1) -> PhaseKey:
    """``world``: training processes; part of the key only when several (the global batch is
    micro_batch_size x gradient_accumulation_steps x world), so one-process keys are unchanged."""
    bake = config_to_dict(config.bake)
    bake.pop("name", None)
    students = {t.name: config.prompt_for(t).student_messages for t in config.targets}
    teachers = {}
    if config.bake.loss == "full":
        teachers = {t.name: prompt_inputs(config.prompt_for(t), teacher=True) for t in config.targets}
    several = {"world": world} if world > 1 else {}
    return PhaseKey.of("train", rollouts=rollout_digests, students=students, teachers=teachers, bake=bake,
                       parent=parent, **several)
