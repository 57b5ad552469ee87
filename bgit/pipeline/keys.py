"""Phase keys: each phase is keyed by the hash of exactly its inputs (DESIGN §3.3).

    stim     generator configs without their rollout settings (+ content digest of
             from_dataset files or of the cached named dataset; + for model-written generators
             the template used (template_path: by content), the built-in personas when none are
             listed, the teacher prompt (${prompt_u}) and the writer model's fingerprint), seed,
             TARGET.augment (+ the digest of the bundled messages) when it is on
    rollout  stim digest, teacher prompt and tools, parent fingerprint, sampling params (+
             extra_kwargs, max_concurrency), K, seed; the generators' rollout settings
             (max_tokens of hardcoded/from_dataset generators, rollout_with_conditioned, then
             also the student prompt); TARGET.model_name's fingerprint when another model samples
    train    rollout digests, student prompts (teacher prompts too for loss=full), every BAKE
             setting but its name, parent fingerprint (+ the student model's for distill
             baking), the number of training processes when more than one

So changing only the learning rate re-runs only training, and a new teacher prompt re-runs
rollout (and stim only when a generator reads the prompt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from bgit.config import config_to_dict
from bgit.config.schema import WRITER_TYPES, GeneratorConfig, InputConfig, PromptConfig, TargetConfig
from bgit.pipeline.augment import messages_digest
from bgit.pipeline.phases import PhaseKey
from bgit.util.files import hash_bytes, hash_file, hash_tree

MODEL_WRITTEN = WRITER_TYPES
STIM_ROWS = 2  # stim rows carry generator_index (the generator whose rollout settings apply)


def prompt_inputs(prompt: PromptConfig, *, teacher: bool = False, student: bool = False) -> dict:
    inputs = {}
    if teacher:
        inputs["teacher"] = {"messages": prompt.teacher_messages, "tools": prompt.teacher_tools}
    if student:
        inputs["student"] = prompt.student_messages
    return inputs


def data_digest(path: Path) -> str:
    return hash_tree(path) if path.is_dir() else hash_file(path)


def stim_entry(generator: GeneratorConfig, data_path: Callable[..., Path],
               dataset_digest: Callable[[str], str] | None = None) -> dict:
    """What of one generator the stim phase reads: its settings but the rollout ones, and the
    content of the files and built-ins it uses."""
    from bgit.pipeline.stim import DATA_DIR

    entry = config_to_dict(generator)
    entry.pop("rollout_with_conditioned")
    if generator.type not in MODEL_WRITTEN:
        entry.pop("max_tokens")  # the rollout's length for these generators
    if generator.type == "from_dataset":
        if generator.path:
            entry["data_digest"] = data_digest(data_path(generator.path, "from_dataset path"))
        elif generator.dataset and dataset_digest is not None:
            entry["data_digest"] = dataset_digest(generator.dataset)
    if generator.type in MODEL_WRITTEN:
        if generator.template_path:
            entry["template_digest"] = hash_file(data_path(generator.template_path, "template_path"))
        elif generator.template is None and generator.type != "custom":
            name = "persona_template.txt" if generator.type == "persona" else "oneshot_qs_template.txt"
            entry["template_digest"] = hash_file(DATA_DIR / name)
        if generator.type == "persona" and not generator.personas:
            entry["personas_digest"] = hash_bytes((DATA_DIR / "personas.txt").read_bytes())
    return entry


def stim_key(config: InputConfig, target: TargetConfig, *, fingerprint: Callable[[str], str],
             data_path: Callable[..., Path], dataset_digest: Callable[[str], str] | None = None) -> PhaseKey:
    """``fingerprint(model name)``, ``data_path(configured path, key)`` and
    ``dataset_digest(named dataset)`` come from the caller, which owns model resolution, the
    rules for files a config may name and the datasets cache."""
    generators, models, reads_prompt = [], {}, False
    for generator in target.generators:
        generators.append(stim_entry(generator, data_path, dataset_digest))
        if generator.type in MODEL_WRITTEN:
            name = generator.model or config.model.base
            models[name] = fingerprint(name)
            reads_prompt = True
    augment = {}
    if target.augment.min_stims:  # bgit's bundled messages are an input too (augment.py)
        augment = {"augment": {"min_stims": target.augment.min_stims, "messages": messages_digest()}}
    return PhaseKey.of("stim", rows=STIM_ROWS, generators=generators, models=models, seed=config.bake.seed, **augment,
                       **prompt_inputs(config.prompt_for(target), teacher=reads_prompt))


def generator_rollout_settings(target: TargetConfig) -> dict[str, dict]:
    """{generator index: its own rollout settings} for generators that have any."""
    settings = {}
    for index, generator in enumerate(target.generators):
        own = {}
        if generator.rollout_max_tokens() is not None:
            own["max_tokens"] = generator.rollout_max_tokens()
        if generator.rollout_with_conditioned:
            own["conditioned"] = True
        if own:
            settings[str(index)] = own
    return settings


def rollout_key(config: InputConfig, target: TargetConfig, stim_digest: str, parent: str,
                sampler: str | None = None) -> PhaseKey:
    """``sampler``: the fingerprint of TARGET.model_name's model when it, not the parent, samples."""
    sampling = {"max_tokens": target.max_tokens, "temperature": target.temperature,
                "num_traj_per_stimulus": target.num_traj_per_stimulus, "top_k": target.top_k}
    if target.extra_kwargs:
        sampling["extra_kwargs"] = target.extra_kwargs
    if target.max_concurrency is not None:
        sampling["batch"] = target.max_concurrency
    prompt = config.prompt_for(target)
    inputs = prompt_inputs(prompt, teacher=True)
    own = generator_rollout_settings(target)
    if own:
        inputs["generators"] = own
        if any(settings.get("conditioned") for settings in own.values()):
            inputs.update(prompt_inputs(prompt, student=True))
    if sampler is not None:
        inputs["sampler"] = sampler
    return PhaseKey.of("rollout", stim=stim_digest, parent=parent, sampling=sampling, seed=config.bake.seed,
                       **inputs)


def train_key(config: InputConfig, rollout_digests: dict[str, str], parent: str, world: int = 1,
              student: str | None = None) -> PhaseKey:
    """``world``: training processes; part of the key only when several (the global batch is
    micro_batch_size x gradient_accumulation_steps x world), so one-process keys are unchanged.
    ``student``: the student model's fingerprint for distill baking (BAKE.model.student_model_path)."""
    bake = config_to_dict(config.bake)
    bake.pop("name", None)
    students = {t.name: config.prompt_for(t).student_messages for t in config.targets}
    teachers = {}
    if config.bake.loss == "full":
        teachers = {t.name: prompt_inputs(config.prompt_for(t), teacher=True) for t in config.targets}
    extra = {"world": world} if world > 1 else {}
    if student is not None:
        extra["student_model"] = student
    return PhaseKey.of("train", rollouts=rollout_digests, students=students, teachers=teachers, bake=bake,
                       parent=parent, **extra)
