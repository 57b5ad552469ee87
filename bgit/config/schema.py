"""The input.yml schema: dataclasses with defaults and help on every field.

This module only declares the shape. :mod:`bgit.config.load` turns YAML into these
objects (with ``FILE:LINE: KEY: message`` errors) and :mod:`bgit.config.hashing`
derives the canonical phase keys.

YAML layout (DESIGN §4)::

    MODEL:   {base: smollm2-135m}
    PROMPT:  {teacher: {messages: [...], tools: [...]}, student: {messages: [...]}}
    TARGET:  {name, generators: [...], max_tokens, temperature, num_traj_per_stimulus, top_k}
    TARGETS: [TARGET, ...]          # instead of TARGET, for several targets
    BAKE:    {name, datasets: [{target, weight}], epochs, ...}

A target may carry its own ``prompt:`` (same shape as PROMPT) overriding the
top-level one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


def _help(text: str, hashed: bool = True, **kwargs) -> Any:
    # hashed=False: bookkeeping that is not part of the config's meaning (left out of
    # section_hash and config_to_dict).
    return field(metadata={"help": text, "hashed": hashed}, **kwargs)


@dataclass
class ModelConfig:
    base: str = _help(
        "Model to bake into: 'smollm2-135m' (embedded), a local HF model directory, a .gguf file, or a "
        "Hugging Face id org/name[@revision] (from the Hugging Face cache; downloaded once when online).",
        default="smollm2-135m",
    )
    dtype: str = _help("Weights dtype for rollout and training: auto, float32, bfloat16, float16.", default="auto")
    trust_remote_code: bool = _help("Allow model code from the model directory (off: untrusted).", default=False)


@dataclass
class PromptConfig:
    teacher_messages: list[dict] = _help(
        "Chat messages ({role, content}) whose behaviour is baked in (PROMPT.teacher.messages).",
        default_factory=list,
    )
    teacher_tools: list[dict] | None = _help("Tool schemas shown to the teacher (PROMPT.teacher.tools).", default=None)
    student_messages: list[dict] = _help(
        "What the baked model sees instead (PROMPT.student.messages); empty = no prompt at all.",
        default_factory=list,
    )


@dataclass
class GeneratorConfig:
    """One stim generator. Which fields apply depends on ``type``."""

    type: str = _help("hardcoded | from_dataset | oneshot_qs | persona", default="hardcoded")
    stims: list[str] = _help("hardcoded: the user messages themselves.", default_factory=list)
    path: str | None = _help("from_dataset: a local JSONL/CSV/text file or a saved `datasets` dataset.", default=None)
    field: str | None = _help("from_dataset: the column holding the message (default: first text column).", default=None)
    numq: int = _help("How many stims this generator yields (from_dataset: sample size; 0 = all).", default=10)
    seed: int | None = _help("Sampling seed; defaults to BAKE.seed.", default=None)
    template: str | None = _help(
        "oneshot_qs/persona: string.Template with ${numq} and ${prompt_u} (persona: also ${persona}).",
        default=None,
    )
    personas: list[str] = _help("persona: descriptions of the users who ask.", default_factory=list)
    model: str | None = _help("oneshot_qs/persona: model that writes the questions, named as MODEL.base is "
                               "(default: MODEL.base).", default=None)
    temperature: float = _help("oneshot_qs/persona: sampling temperature of the question writer.", default=1.0)
    max_tokens: int = _help("oneshot_qs/persona: new-token budget of one question-writing call.", default=512)


@dataclass
class TargetConfig:
    name: str = _help("Target name; datasets land under targets/<name>/.", default="default")
    generators: list[GeneratorConfig] = _help("Stim generators, run in order.", default_factory=list)
    max_tokens: int = _help("Rollout: new tokens per trajectory.", default=128)
    temperature: float = _help("Rollout: sampling temperature (teacher log-probs are stored at T=1).", default=1.0)
    num_traj_per_stimulus: int = _help("Rollout: trajectories sampled per stim.", default=1)
    top_k: int = _help("Rollout: teacher log-probs kept per token (plus a tail bucket).", default=20)
    prompt: PromptConfig | None = _help("Per-target PROMPT override; None = the top-level PROMPT.", default=None)


@dataclass
class DatasetWeight:
    target: str = _help("Name of a target.", default="default")
    weight: float = _help("Relative share of this target in the training mix.", default=1.0)


@dataclass
class LoraConfig:
    r: int = _help("LoRA rank.", default=16)
    lora_alpha: float | None = _help("LoRA alpha; default 2*r.", default=None)
    lora_dropout: float = _help("LoRA dropout; 0 (DESIGN §2: no dropout while baking).", default=0.0)
    target_modules: list[str] | str = _help("Modules to adapt; 'all-linear' = every linear but lm_head.", default="all-linear")


@dataclass
class OptimizerConfig:
    learning_rate: float = _help("AdamW learning rate.", default=1e-4)
    weight_decay: float = _help("AdamW weight decay.", default=0.0)
    betas: list[float] = _help("AdamW betas.", default_factory=lambda: [0.9, 0.999])


@dataclass
class SchedulerConfig:
    type: str = _help("constant | linear | cosine (decay after warm-up).", default="cosine")
    warmup_ratio: float = _help("Fraction of optimizer steps spent warming up linearly.", default=0.05)
    min_lr_ratio: float = _help("Final learning rate as a fraction of the peak.", default=0.0)


@dataclass
class DataConfig:
    max_length: int = _help("Truncate student context + response to this many tokens.", default=1024)
    train_eval_split: float = _help("Fraction of trajectories used for training; the rest is eval.", default=0.9)


@dataclass
class DeepSpeedConfig:
    enabled: bool = _help("Run training through a DeepSpeed engine.", default=False)
    zero_stage: int = _help("ZeRO optimisation stage (BAKE.deepspeed.zero_optimization.stage).", default=0)


@dataclass
class BakeConfig:
    name: str = _help("Name of the bake (the default commit message).", default="bake")
    datasets: list[DatasetWeight] = _help("Targets to train on and their weights; default: every target, weight 1.", default_factory=list)
    epochs: int = _help("Passes over the training trajectories.", default=2)
    micro_batch_size: int = _help("Trajectories per forward/backward.", default=4)
    gradient_accumulation_steps: int = _help("Micro-batches per optimizer step.", default=1)
    total_trajectories: int | None = _help("Trajectories drawn from the weighted mix; default: all.", default=None)
    seed: int = _help("Seed of stim sampling, rollout sampling and training.", default=0)
    parent: str = _help("'base' or 'head': bake on top of the model baked at HEAD (sequential baking).", default="base")
    loss: str = _help("topk (cached teacher top-K + tail) | full (teacher recomputed, whole vocabulary).", default="topk")
    autocast: str = _help("auto (bf16 on CUDA GPUs that have it, else off) | bf16 | off: bf16 autocast in training.",
                          default="auto")
    lora: LoraConfig = _help("BAKE.model.baked_adapter_config", default_factory=LoraConfig)
    optimizer: OptimizerConfig = _help("BAKE.optimizer", default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = _help("BAKE.scheduler", default_factory=SchedulerConfig)
    data: DataConfig = _help("BAKE.data", default_factory=DataConfig)
    deepspeed: DeepSpeedConfig = _help("BAKE.deepspeed", default_factory=DeepSpeedConfig)


@dataclass
class InputConfig:
    model: ModelConfig = _help("MODEL section.", default_factory=ModelConfig)
    prompt: PromptConfig = _help("PROMPT section.", default_factory=PromptConfig)
    targets: list[TargetConfig] = _help("TARGET (one) or TARGETS (several).", default_factory=list)
    bake: BakeConfig = _help("BAKE section.", default_factory=BakeConfig)
    source: str = _help("File the config was read from (for messages).", hashed=False, default="input.yml")

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    def prompt_for(self, target: TargetConfig) -> PromptConfig:
        return target.prompt or self.prompt
