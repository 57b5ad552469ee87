"""The input.yml schema: every setting declared once (YAML key, type, default, range, help).

The loader (:mod:`bgit.config.load`), the reference (docs/input-yml.md), ``bgit validate``
and the trainer all read these classes; see :mod:`bgit.config.declare` for how a field is
declared. YAML layout (DESIGN §4)::

    MODEL:   {base: smollm2-135m}
    PROMPT:  {teacher: {messages: [...], tools: [...]}, student: {messages: [...]}}
    TARGET:  {name, generators: [...], max_tokens, temperature, num_traj_per_stimulus, top_k}
    TARGETS: [TARGET, ...]          # instead of TARGET, for several targets
    BAKE:    {name, datasets: [{target, weight}], epochs, model: {baked_adapter_config: ...}, ...}

Keys of the hosted prompt-baking tool that mean nothing here are accepted with a notice
(``notice=``); keys parsed ahead of their implementation say so the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from bgit.config.declare import Settings, between, declared, internal, setting, type_problem, value_problem
from bgit.config.errors import ConfigIssue

SCHEMA_VERSION = 2
SEED = between(0, 2**32 - 1)
NOT_YET = "parsed but not used yet by this version of bgit"

DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ROLES = ("system", "user", "assistant", "tool")
GENERATOR_TYPES = ("hardcoded", "from_dataset", "oneshot_qs", "persona", "custom")
WRITER_TYPES = ("oneshot_qs", "persona", "custom")  # a model writes the stims from a template
TEMPLATE_VARIABLES = {"oneshot_qs": ("numq", "prompt_u"), "persona": ("numq", "prompt_u", "persona"),
                      "custom": ("numq", "prompt_u")}
NAMED_DATASETS = ("squad", "gsm8k", "mmlu", "hellaswag", "code_contests")
WRITER_MAX_TOKENS = 512  # a question-writing call's default budget
# TARGET.extra_kwargs: sampling parameters both rollout backends (transformers' generate, vLLM)
# take with the same meaning; the teacher's log-probs are never affected by them.
SAMPLING_KWARGS = {"top_p": ("float", between(0, 1, low_open=True)), "top_k": ("int", between(0, 1_000_000)),
                   "min_p": ("float", between(0, 1)), "repetition_penalty": ("float", between(0, 10, low_open=True))}
OPTIMIZERS = ("adamw", "adam", "sgd", "adafactor")
# bgit's own schedules (linear warm-up, then flat / linear / cosine down to min_lr_ratio) ...
OWN_SCHEDULERS = ("constant", "linear", "cosine")
# ... and transformers.get_scheduler's; 'huggingface' = transformers' default schedule ('linear').
HF_SCHEDULERS = ("huggingface", "constant_with_warmup", "cosine_with_restarts", "cosine_with_min_lr",
                 "polynomial", "inverse_sqrt")
SCHEDULERS = OWN_SCHEDULERS + HF_SCHEDULERS
FLOOR_SCHEDULERS = ("linear", "cosine", "cosine_with_min_lr")  # the ones that honour min_lr_ratio
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
LORA_KEYS = ("r", "lora_alpha", "lora_dropout", "bias", "target_modules")
DEEPSPEED_OPTIMIZERS = ("adamw", "adam")


def _is_true(value: Any) -> bool:
    return value is True


def _is_false(value: Any) -> bool:
    return value is False


def _non_empty(value: Any) -> bool:
    return bool(value)


def _not_bake(value: Any) -> bool:
    return value != "bake"


@dataclasses.dataclass
class ModelConfig(Settings):
    PATH: ClassVar[str] = "MODEL"

    base: str = setting("smollm2-135m", "Model to bake into: 'smollm2-135m' (embedded), a local HF model "
                        "directory, a .gguf file, or a Hugging Face id org/name[@revision] (from the Hugging "
                        "Face cache; downloaded once when online).")
    dtype: str = setting("auto", "Weights dtype for rollout and training (one model serves both); auto = "
                         "float32 on CPU, bf16 on CUDA GPUs that have it.", choices=DTYPES,
                         value_aliases=DTYPE_ALIASES)
    trust_remote_code: bool = setting(False, "Run Python code shipped with the model (auto_map). Off: "
                                      "untrusted. On: honoured by `bgit bake`; a commit's own setting is "
                                      "honoured by eval/chat/export only after `git config "
                                      "bgit.trustRemoteCode true` (a clone cannot switch it on).")


@dataclasses.dataclass
class PromptConfig(Settings):
    PATH: ClassVar[str] = "PROMPT"

    teacher_messages: list[dict] = setting(
        help="Required (here, or in every target's own prompt): chat messages ({role, content}) whose "
             "behaviour is baked in; multi-turn history allowed.",
        key="teacher.messages", kind="messages", factory=list)
    teacher_tools: list[dict] | None = setting(
        None, "OpenAI function schemas shown to the teacher ({type: function, function: {...}}).",
        key="teacher.tools", kind="tools")
    student_messages: list[dict] = setting(
        help="What the baked model sees instead: [] (or one message with content '') = no prompt at all, "
             "the behaviour is always on; other content is a trigger.", key="student.messages",
        kind="messages", factory=list)


@dataclasses.dataclass
class GeneratorConfig(Settings):
    """One stim generator; which keys apply depends on ``type`` (``used_by``)."""

    PATH: ClassVar[str] = "TARGET.generators[]"

    type: str = setting("hardcoded", "Which generator.", choices=GENERATOR_TYPES,
                        required=f"one of {', '.join(GENERATOR_TYPES)}")
    stims: list[str] = setting(help="hardcoded: the user messages themselves.", aliases=("questions",),
                               used_by=("hardcoded",), factory=list)
    path: str | None = setting(None, "from_dataset: a JSONL/CSV/text file or a saved `datasets` directory, "
                               "relative to the config file and inside the repository.",
                               kind="data_path", used_by=("from_dataset",))
    dataset: str | None = setting(None, "from_dataset: a named dataset, read through the `datasets` library from "
                                  "its cache (downloaded once when the hub can be reached); the user message is "
                                  "squad/gsm8k: question, mmlu: question + lettered choices, hellaswag: ctx, "
                                  "code_contests: description. With `path`: a local copy of it (a saved "
                                  "`datasets` directory or a data file) read with the same columns.",
                                  choices=NAMED_DATASETS, used_by=("from_dataset",))
    field: str | None = setting(None, "from_dataset: the column holding the message (default: the named "
                                "dataset's, else the first text column).", used_by=("from_dataset",))
    numq: int | None = setting(None, "How many stims. hardcoded: the first numq stims as listed (default and 0: "
                               "all); from_dataset: a sample of numq rows drawn with the seed, kept in dataset "
                               "order (0 = all rows); oneshot_qs/custom: questions written; persona: questions "
                               "per listed persona, or with no personas listed the number of built-in personas "
                               "drawn, one question each. Default: 10 (hardcoded: all).",
                               range=between(0, 100_000))
    seed: int | None = setting(None, "Sampling seed; default BAKE.seed.", range=SEED,
                               used_by=("from_dataset",) + WRITER_TYPES)
    template: str | None = setting(None, "oneshot_qs/persona/custom: the template inline, a "
                                   "string.Template with ${numq} and ${prompt_u} (persona: also "
                                   "${persona}); at most 1 MB. Default: a built-in one (custom: required, "
                                   "here or in template_path).",
                                   aliases=("template_content",), kind="template", used_by=WRITER_TYPES)
    template_path: str | None = setting(None, "The template in a file (UTF-8, at most 1 MB, inside the "
                                        "repository), relative to the config file; read again when the stims "
                                        "are written, part of the stim phase key by content, and committed "
                                        "with the bake.", kind="template_file", used_by=WRITER_TYPES)
    personas: list[str] = setting(help="persona: descriptions of the users who ask (none: numq personas drawn "
                                  "with the seed from bgit's 30 built-in ones).", used_by=("persona",),
                                  factory=list)
    model: str | None = setting(None, "Model that writes the questions, named as MODEL.base is (default: "
                                "MODEL.base).",
                                used_by=WRITER_TYPES)
    temperature: float = setting(1.0, "Sampling temperature of the question writer.", range=between(0, 2),
                                 used_by=WRITER_TYPES)
    max_tokens: int | None = setting(None, "oneshot_qs/persona/custom: new-token budget of one question-writing "
                                     f"call (default {WRITER_MAX_TOKENS}); hardcoded/from_dataset: new tokens per "
                                     "trajectory when this generator's stims are rolled out (default "
                                     "TARGET.max_tokens).", range=between(1, 32768))
    rollout_with_conditioned: bool = setting(False, "Sample these stims' trajectories with the student prompt "
                                             "instead of the teacher prompt (the sampling model sees the "
                                             "student prompt); the teacher's log-probs on them still come "
                                             "from the teacher prompt.")

    def _resolve(self) -> None:
        if self.numq is None:
            self.numq = len(self.stims) if self.type == "hardcoded" else 10
        if self.max_tokens is None and self.type in WRITER_TYPES:
            self.max_tokens = WRITER_MAX_TOKENS

    def _problems(self):
        if self.numq == 0 and self.type in WRITER_TYPES:
            return [(("numq",), "must be at least 1 (0 = all rows is for from_dataset), got 0")]
        if self.template is not None and self.template_path is not None:
            return [(("template_path",), "give either template_path or template_content, not both")]
        if self.type == "custom" and self.template is None and self.template_path is None:
            return [(("type",), "custom generators need template_path or template_content (the whole prompt "
                                "the writer model completes)")]
        return []

    def rollout_max_tokens(self) -> int | None:
        """This generator's own rollout length (hardcoded/from_dataset), None: TARGET.max_tokens."""
        return None if self.type in WRITER_TYPES else self.max_tokens

    def _notices(self, written: set[str]) -> list[tuple[tuple, str]]:
        """Notices that depend on the generator type; ``written``: the fields given in the file."""
        if self.type == "hardcoded" and "numq" in written and self.numq > len(self.stims):
            return [(("numq",), f"is {self.numq} but {len(self.stims)} stims are listed: all of them are used")]
        return []


# TARGET.augment's and TARGET.max_tokens' defaults, measured (bench/results/2026-11-30- and
# 2026-12-01-quality-experiments, 2026-12-01-x86_64-epyc-2core/quality.log): 512 stims x 1 trajectory
# beat 256 x 1 for twice the epochs at the same training cost (closure 0.884 vs 0.869); then 1,000
# stims x 32 tokens beat 512 x 64 for the same sampled tokens (french 0.885 vs 0.869). The bundled
# messages (1,002) cap the stims near this.
AUGMENT_STIMS_PER_BAKE = 1000
DEFAULT_ROLLOUT_TOKENS = 32


@dataclasses.dataclass
class AugmentConfig(Settings):
    """Topping up a target with few stims (bgit/pipeline/augment.py)."""

    PATH: ClassVar[str] = "TARGET.augment"
    SHORTHAND: ClassVar[str] = "min_stims"  # `augment: 0` = `augment: {min_stims: 0}`

    min_stims: int | None = setting(None, "When the generators give fewer stims than this, add bgit's "
                                    "bundled everyday user messages (about a thousand, many topics; sampled "
                                    "with BAKE.seed) up to this many, so that a short stim list still bakes a "
                                    "behaviour that holds on other messages. Default: "
                                    f"{AUGMENT_STIMS_PER_BAKE} per bake, shared by its targets "
                                    f"({AUGMENT_STIMS_PER_BAKE // 2} each for two), so a bake's size does "
                                    "not grow with its targets. 0 = off. `augment: N` is short for "
                                    "`augment: {min_stims: N}`.",
                                    range=between(0, 100_000))


@dataclasses.dataclass
class TargetConfig(Settings):
    PATH: ClassVar[str] = "TARGET"

    name: str = setting("default", "Target name; its datasets land under targets/<name>/.",
                        kind="target_name")
    generators: list[GeneratorConfig] = setting(help="Stim generators, run in order (at least one in a "
                                                "file; a target built in Python for a rollout alone "
                                                "may have none).", required="at least one generator is required",
                                                factory=list)
    max_tokens: int = setting(DEFAULT_ROLLOUT_TOKENS, "Rollout: new tokens per trajectory (also the length of "
                              "the responses `bgit eval` samples).", range=between(1, 32768))
    temperature: float = setting(1.0, "Rollout: sampling temperature (teacher log-probs are stored at T=1).",
                                 range=between(0, 2))
    num_traj_per_stimulus: int = setting(1, "Rollout: trajectories sampled per stim.", range=between(1, 100))
    top_k: int = setting(20, "Rollout: teacher log-probs kept per token (plus a tail bucket).",
                         range=between(1, 1000))
    augment: AugmentConfig = setting(help="Stims added to a short stim list.", factory=AugmentConfig)
    prompt: PromptConfig | None = setting(None, "This target's own PROMPT (same shape); the parts it "
                                          "leaves out come from the top-level PROMPT.", kind="prompt")
    model_name: str | None = setting(None, "The model that samples the trajectories, named as MODEL.base is "
                                     "(default: the parent model); the teacher's log-probs on them still come "
                                     "from the parent model with the teacher prompt, so its vocabulary must be "
                                     "the parent model's.")
    max_concurrency: int | None = setting(None, "Trajectories sampled per batch by the hf rollout backend "
                                          "(default 64; samples depend on it); the vLLM backend schedules its "
                                          "own batches and ignores it (with a notice when it rolls out).",
                                          range=between(1, 1024))
    extra_kwargs: dict = setting(help="Extra sampling parameters of the rollout, passed to both backends: "
                                 f"{', '.join(SAMPLING_KWARGS)} (top_k: sampling's top-k, 0 = off; not "
                                 "TARGET.top_k). They shape the sampled trajectories only; the teacher's "
                                 "log-probs stay its full distribution.", factory=dict)

    def _problems(self):
        return [(("extra_kwargs", key), message) for key, message in sampling_problems(self.extra_kwargs)]


def sampling_problems(options: dict) -> list[tuple[str, str]]:
    """Keys of TARGET.extra_kwargs that are not sampling parameters bgit passes on, or out of range."""
    from bgit.config.declare import suggestion

    problems = []
    for key, value in options.items():
        if key not in SAMPLING_KWARGS:
            problems.append((key, f"not a sampling parameter bgit passes on{suggestion(key, SAMPLING_KWARGS)} "
                                  f"(known: {', '.join(sorted(SAMPLING_KWARGS))})"))
            continue
        kind, allowed = SAMPLING_KWARGS[key]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (kind == "int" and not isinstance(value, int)):
            problems.append((key, f"expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}"))
        elif value not in allowed:
            problems.append((key, allowed.message(repr(value))))
    return problems


@dataclasses.dataclass
class DatasetWeight(Settings):
    PATH: ClassVar[str] = "BAKE.datasets[]"

    target: str = setting("default", "Name of a target.", required="the name of a target")
    weight: float = setting(1.0, "Relative share of this target in the training mix.",
                            range=between(0, 1e6, low_open=True))


@dataclasses.dataclass
class LoraConfig(Settings):
    PATH: ClassVar[str] = "BAKE.model.baked_adapter_config"

    r: int = setting(16, "LoRA rank.", range=between(1, 1024))
    lora_alpha: float | None = setting(None, "LoRA alpha; default 2*r (DESIGN §2).",
                                       range=between(0, 65536, low_open=True))
    lora_dropout: float = setting(0.0, "LoRA dropout; 0 (DESIGN §2: no dropout while baking).",
                                  range=between(0, 1, high_open=True))
    bias: str = setting("none", "PEFT LoRA bias: none | all | lora_only (not with BAKE.parent: head).",
                        choices=("none", "all", "lora_only"))
    target_modules: list[str] | str = setting("all-linear", "Modules to adapt: 'all-linear' (every linear "
                                              "layer but the output head) or a list of module names.")


@dataclasses.dataclass
class BakeModelConfig(Settings):
    PATH: ClassVar[str] = "BAKE.model"

    type: str = setting("bake", "Kind of run on the hosted service.", hashed=False,
                        notice="has no effect here: every bgit run is a bake", notice_if=_not_bake)
    dtype: str | None = setting(None, "Weights dtype while baking; the same model rolls out, so this is "
                                "MODEL.dtype (set one of them, or both alike).", choices=DTYPES,
                                value_aliases=DTYPE_ALIASES)
    attn_implementation: str | None = setting(None, "Attention kernel while training (transformers' "
                                              "attn_implementation); default: as loaded, with SDPA computed in float32 "
                                              "under bf16 autocast on a CPU.", choices=ATTENTION)
    disable_activation_checkpoint: bool = setting(True, "true (bgit's default, unlike the hosted tool's): no "
                                                  "activation (gradient) checkpointing, faster; false: "
                                                  "recompute activations in the backward pass, ~30% more "
                                                  "compute for much less activation memory.")
    peft_config: dict = setting(help="More PEFT LoraConfig options (use_rslora, layers_to_transform, ...), "
                                "merged over baked_adapter_config (its LoRA keys win). Not the "
                                "init_lora_weights that rewrite the base weights (pissa, olora, corda, "
                                "loftq) or need a data pass (eva).", factory=dict)
    save_name: str | None = setting(None, "Name the hosted service saves the model under.", hashed=False,
                                    notice="has no effect here: a bake is its commit; name it with "
                                           "`bgit tag NAME`")
    student_model_path: str | None = setting(None, "Distill baking: train the adapter on this other model "
                                             "(named as MODEL.base is) without the teacher prompt, to match "
                                             "the parent model with it; the student needs the parent's "
                                             "vocabulary, and eval, chat, export and serve load it as the "
                                             "adapter's base.")
    parent_model_name: str | None = setting(None, "Set by the hosted service.", hashed=False,
                                            notice="has no effect here: the parent model is MODEL.base "
                                                   "(with BAKE.parent: head, plus the bake at HEAD)")


@dataclasses.dataclass
class OptimizerConfig(Settings):
    PATH: ClassVar[str] = "BAKE.optimizer"

    type: str = setting("adamw", "adamw | adam | sgd (no momentum) | adafactor (torch's); DeepSpeed runs "
                        "take adamw or adam.", choices=OPTIMIZERS,
                        value_aliases={"AdamW": "adamw", "Adam": "adam", "SGD": "sgd", "Adafactor": "adafactor"})
    learning_rate: float = setting(5e-4, "Peak learning rate (5e-4 baked best of 3e-4 .. 2e-3 with the "
                                   "default LoRA and batch: bench/results/2026-11-30-quality-experiments).",
                                   range=between(0, 1, low_open=True))
    weight_decay: float = setting(0.0, "Weight decay.", range=between(0, 1))
    betas: list[float] = setting(help="Adam betas [beta1, beta2] (adamw, adam).", length=2,
                                 item_range=between(0, 1, high_open=True), factory=lambda: [0.9, 0.999])
    max_grad_norm: float = setting(1.0, "Gradient clipping threshold (global L2 norm).",
                                   range=between(0, 10_000, low_open=True))


@dataclasses.dataclass
class SchedulerConfig(Settings):
    PATH: ClassVar[str] = "BAKE.scheduler"
    SHORTHAND: ClassVar[str] = "type"  # `scheduler: cosine` = `scheduler: {type: cosine}`

    type: str = setting("cosine", "constant | linear | cosine: bgit's (linear warm-up, then flat / linear "
                        "/ cosine down to min_lr_ratio); huggingface = transformers' default schedule "
                        "(linear warm-up and decay to 0); the others are transformers.get_scheduler's. "
                        "`scheduler: NAME` is short for `scheduler: {type: NAME}`.",
                        choices=SCHEDULERS)
    warmup_ratio: float = setting(0.05, "Fraction of optimizer steps spent warming up linearly.",
                                  range=between(0, 1, high_open=True))
    min_lr_ratio: float = setting(0.0, "Final learning rate as a fraction of the peak (linear, cosine, "
                                  "cosine_with_min_lr).", range=between(0, 1))
    lr: float | None = setting(None, "Deprecated learning rate of the hosted tool.", hashed=False,
                               range=between(0, 1, low_open=True),
                               notice="deprecated and ignored: the learning rate is BAKE.optimizer.learning_rate")


@dataclasses.dataclass
class DataConfig(Settings):
    PATH: ClassVar[str] = "BAKE.data"

    type: str | None = setting(None, "Data pipeline of the hosted service (single_baker).", hashed=False,
                               notice="has no effect here: bgit bakes from its targets' rollouts")
    sources: list[Any] = setting(help="Training data sources of the hosted service.", factory=list,
                                 hashed=False, notice="has no effect here: the training data is BAKE.datasets",
                                 notice_if=_non_empty)
    eval_sources: list[Any] = setting(help="Eval data sources of the hosted service.", factory=list,
                                      hashed=False, notice="has no effect here: eval uses held-out stims "
                                      "(BAKE.data.train_eval_split)", notice_if=_non_empty)
    beta: float = setting(0.0, "0: forward KL(teacher||student) (DESIGN §2); otherwise the generalised "
                          "Jensen-Shannon divergence of TRL's GKD with this beta (1 = reverse KL).",
                          range=between(0, 1))
    temperature: float = setting(1.0, "Softmax temperature of the divergence (TRL's generalized_jsd_loss); "
                                 "exact with loss: full; with loss: topk the teacher's top-K ratios are "
                                 "exact and the tail bucket is tempered as one token.",
                                 range=between(0, 10, low_open=True))
    max_length: int = setting(1024, "Student context + response tokens; longer responses lose their tail.",
                              range=between(1, 131072))
    train_eval_split: float = setting(0.9, "Fraction of stims trained on, the rest held out for eval KL; "
                                      "a number, or a pair [train, eval] such as [1, 0].", kind="split",
                                      range=between(0, 1, low_open=True))
    dl_num_workers: int | None = setting(None, "Data-loader workers of the hosted service.", hashed=False,
                                         range=between(0, 1024), notice="has no effect here")
    num_proc: int | None = setting(None, "Preprocessing processes of the hosted service.", hashed=False,
                                   range=between(1, 1024), notice="has no effect here")
    seed: int | None = setting(None, "Seed of the train/eval split and the training mix; default BAKE.seed.",
                               range=SEED)
    cache_dir: str | None = setting(None, "Cache directory of the hosted service.", hashed=False,
                                    notice="has no effect here: phases are cached under .git/bgit/phases")


@dataclasses.dataclass
class DeepSpeedConfig(Settings):
    PATH: ClassVar[str] = "BAKE.deepspeed"

    enabled: bool = setting(False, "Train through a DeepSpeed engine: on when BAKE.deepspeed is written "
                            "(even `{}`).", key="", present=True)
    zero_stage: int = setting(0, "ZeRO optimisation stage: 0 (off), 1 (optimizer state split over ranks), "
                              "2 (+ gradients) or 3 (+ weights, the frozen parent's included).",
                              key="zero_optimization.stage", range=between(0, 3))


@dataclasses.dataclass
class CheckpointConfig(Settings):
    PATH: ClassVar[str] = "BAKE.checkpoint[]"

    type: str | None = setting(None, "Checkpoint format of the hosted service.", hashed=False,
                               notice="has no effect here: checkpoints are safetensors + JSON")
    output_dir: str | None = setting(None, "Where the hosted service writes checkpoints.", hashed=False,
                                     notice="has no effect here: checkpoints live in the train phase's "
                                            "work directory under .git/bgit/phases")
    enabled: bool = setting(True, "false: this entry writes no checkpoints.", weights=False)
    auto_resume: bool = setting(True, "Resume an interrupted training run from its newest checkpoint "
                                "(false in any enabled entry: start over).", weights=False)
    save_every_n_steps: int = setting(0, "Checkpoint every this many optimizer steps (0 = never).",
                                      range=between(0, 1_000_000), weights=False)
    save_every_n_epochs: int = setting(1, "Checkpoint every this many epochs (0 = never).",
                                       range=between(0, 1000), weights=False)
    save_end_of_training: bool = setting(True, "Keep the trained adapter at the end.", weights=False,
                                         notice="has no effect: the adapter at the end of training is the "
                                                "bake and always saved", notice_if=_is_false)


@dataclasses.dataclass
class BakeConfig(Settings):
    PATH: ClassVar[str] = "BAKE"

    name: str = setting("bake", "Name of the bake (the default commit message).", weights=False)
    datasets: list[DatasetWeight] = setting(help="Targets to train on and their weights; default: every "
                                            "target, weight 1.", factory=list)
    epochs: int = setting(2, "Passes over the training trajectories.", range=between(1, 1000))
    micro_batch_size: int = setting(4, "Trajectories per forward/backward.", range=between(1, 1024))
    gradient_accumulation_steps: int = setting(1, "Micro-batches per optimizer step.", range=between(1, 1024))
    total_trajectories: int | None = setting(None, "Trajectories drawn from the weighted mix; default: all.",
                                             range=between(1, 10_000_000))
    seed: int = setting(0, "Seed of stim sampling, rollout sampling and training.", range=SEED)
    parent: str = setting("base", "'base' or 'head': bake on top of the model baked at HEAD (sequential "
                          "baking).", choices=("base", "head"))
    loss: str = setting("topk", "topk (cached teacher top-K + tail) | full (teacher recomputed, whole "
                        "vocabulary).", choices=("topk", "full"))
    autocast: str = setting("auto", "auto (bf16 on CUDA GPUs that have it and on CPUs with native bf16: "
                            "AMX, AVX512-BF16; else off) | bf16 | off: bf16 "
                            "autocast in training.", choices=("auto", "bf16", "off"))
    lora: LoraConfig = setting(help="The LoRA adapter.", key="model.baked_adapter_config", factory=LoraConfig)
    model: BakeModelConfig = setting(help="The model while baking.", factory=BakeModelConfig)
    optimizer: OptimizerConfig = setting(help="The optimizer.", factory=OptimizerConfig)
    scheduler: SchedulerConfig = setting(help="The learning-rate schedule.", factory=SchedulerConfig)
    data: DataConfig = setting(help="The training data and the objective.", factory=DataConfig)
    deepspeed: DeepSpeedConfig = setting(help="DeepSpeed.", factory=DeepSpeedConfig)
    checkpoint: list[CheckpointConfig] = setting(help="Training checkpoints (entries combine: a checkpoint "
                                                 "is written when any enabled entry asks). Default: every "
                                                 "epoch, resumed automatically.", weights=False,
                                                 factory=lambda: [CheckpointConfig()])
    train_log_iter_interval: int = setting(1, "Write a metrics row every this many optimizer steps.",
                                           range=between(1, 1_000_000), weights=False)
    eval_interval: int = setting(0, "Also measure eval KL every this many optimizer steps (0: only before "
                                 "training and after every epoch).", range=between(0, 1_000_000), weights=False)
    activation_checkpoint_cpu_offload: bool = setting(False, "Offload checkpointed activations to the CPU "
                                                      "(hosted service).", hashed=False,
                                                      notice="has no effect here", notice_if=_is_true)
    wandb: dict | None = setting(None, "Weights & Biases settings of the hosted service.", hashed=False,
                                 notice="has no effect here: bgit does not log to Weights & Biases; "
                                        "metrics are in metrics.jsonl (`bgit metrics`)")

    def _resolve(self) -> None:
        merged = {k: v for k, v in self.model.peft_config.items() if k in LORA_KEYS}
        if merged and not _lora_value_problems(merged):
            self.lora = dataclasses.replace(self.lora, **merged)
            self.model.peft_config = {k: v for k, v in self.model.peft_config.items() if k not in LORA_KEYS}
        if self.lora.lora_alpha is None:
            self.lora.lora_alpha = float(2 * self.lora.r)
        if self.data.seed is None:
            self.data.seed = self.seed

    def _problems(self):
        problems = [(("model", "peft_config", key), message)
                    for key, message in _lora_value_problems(self.model.peft_config)]
        problems += [(("model", "peft_config", key), message)
                     for key, message in peft_option_problems(self.model.peft_config)]
        if self.parent == "head":
            problems += _chain_problems(self)
        if self.scheduler.min_lr_ratio > 0 and self.scheduler.type not in FLOOR_SCHEDULERS:
            problems.append((("scheduler", "min_lr_ratio"), f"only {', '.join(FLOOR_SCHEDULERS)} decay to a "
                             f"floor; set 0 for scheduler type {self.scheduler.type!r}"))
        if self.model.student_model_path is not None:
            problems += _distill_problems(self)
        if self.deepspeed.enabled and self.optimizer.type not in DEEPSPEED_OPTIMIZERS:
            problems.append((("optimizer", "type"), f"DeepSpeed runs take {' or '.join(DEEPSPEED_OPTIMIZERS)}, "
                             f"got {self.optimizer.type!r}"))
        return problems


def _lora_value_problems(options: dict) -> list[tuple[str, str]]:
    """LoRA keys written in peft_config, checked against baked_adapter_config's declaration."""
    problems = []
    for key in LORA_KEYS:
        if key in options:
            decl = declared(LoraConfig, key)
            problem = type_problem(decl.info, options[key]) or value_problem(decl.spec, options[key])
            if problem:
                problems.append((key, problem))
    return problems


# PEFT initialisations that subtract the adapter's start from the base weights (PiSSA, OLoRA,
# CorDA, LoftQ) or wait for a data pass bgit does not run (EVA): measured with PiSSA and OLoRA,
# the saved adapter moved the unchanged base's logits by ~6 from the trained model's.
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "eva")


def peft_option_problems(options: dict) -> list[tuple[str, str]]:
    """Keys of BAKE.model.peft_config that PEFT's LoraConfig does not take, or refuses."""
    rest = {k: v for k, v in options.items() if k not in LORA_KEYS}
    if not rest:
        return []
    import peft  # only for a config that uses peft_config: validate stays fast otherwise

    known = {f.name for f in dataclasses.fields(peft.LoraConfig)} - {"peft_type", "task_type", "base_model_name_or_path"}
    unknown = [k for k in rest if k not in known]
    if unknown:
        from bgit.config.declare import suggestion
        return [(k, f"not an option of PEFT's LoraConfig{suggestion(k, known)}") for k in unknown]
    init = rest.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS):
        return [("init_lora_weights", f"{init!r} rewrites the base model's weights or needs a pass over "
                 "data first, and a bake's adapter applies to the unchanged base model; use true, "
                 "'gaussian' or 'orthogonal'")]
    try:
        peft.LoraConfig(**rest)
    except (TypeError, ValueError) as error:
        return [(next(iter(rest)), f"refused by PEFT: {str(error).splitlines()[0]}")]
    return []


def _distill_problems(bake: BakeConfig) -> list[tuple[tuple, str]]:
    """Distill baking trains a fresh adapter on another model: the teacher is never that model
    with its adapter off (loss: full), and no chain of adapters applies to it (parent: head)."""
    problems = []
    if bake.loss == "full":
        problems.append((("loss",), "must be topk with BAKE.model.student_model_path (loss full recomputes the "
                                    "teacher as the student with its adapter off)"))
    if bake.parent == "head":
        problems.append((("parent",), "must be base with BAKE.model.student_model_path (a distilled adapter "
                                      "does not stack on the bake at HEAD)"))
    return problems


def _chain_problems(bake: BakeConfig) -> list[tuple[tuple, str]]:
    """A bake on HEAD is committed as the concatenation of the chain's adapters, which needs
    plain LoRA (bgit.train.lora.concat_adapters)."""
    why = "cannot be concatenated with the bake at HEAD (BAKE.parent: head)"
    problems = []
    if bake.lora.bias != "none":
        problems.append((("lora", "bias"), f"must be none: LoRA biases {why}"))
    for key in ("use_dora", "modules_to_save", "rank_pattern", "alpha_pattern"):
        if bake.model.peft_config.get(key):
            problems.append((("model", "peft_config", key), f"{key} {why}"))
    return problems


@dataclasses.dataclass
class InputConfig(Settings):
    PATH: ClassVar[str] = ""

    model: ModelConfig = setting(help="The model to bake into.", key="MODEL", factory=ModelConfig)
    prompt: PromptConfig = setting(help="The prompt to bake in.", key="PROMPT", factory=PromptConfig)
    targets: list[TargetConfig] = setting(help="TARGET (one) or TARGETS (several).", key="TARGETS",
                                          kind="targets", factory=list)
    bake: BakeConfig = setting(help="Training.", key="BAKE", factory=BakeConfig)
    source: str = internal("input.yml", "File the config was read from (for messages).")
    root: str | None = internal(None, "Directory that files the config names must stay in (the "
                                "repository root, else the config file's directory).")
    notices: list[ConfigIssue] = internal(help="Keys accepted without effect here: one notice each.",
                                          factory=list, compare=False)

    def _resolve(self) -> None:
        for target in self.targets:
            if target.augment.min_stims is None:
                target.augment.min_stims = AUGMENT_STIMS_PER_BAKE // max(1, len(self.targets))
            for generator in target.generators:
                if generator.type != "hardcoded" and generator.seed is None:
                    generator.seed = self.bake.seed
                if generator.type in WRITER_TYPES and generator.model is None:
                    generator.model = self.model.base
        if not self.bake.datasets:
            self.bake.datasets = [DatasetWeight(target=t.name, weight=1.0) for t in self.targets]
        if self.bake.model.dtype is not None and self.model.dtype == "auto":
            self.model.dtype = self.bake.model.dtype
        elif self.bake.model.dtype is None:
            self.bake.model.dtype = self.model.dtype

    def _problems(self):
        problems = []
        if self.bake.model.dtype != self.model.dtype:
            problems.append((("bake", "model", "dtype"), f"{self.bake.model.dtype} differs from MODEL.dtype "
                             f"{self.model.dtype} (one model rolls out and trains)"))
        names = [t.name for t in self.targets]
        for index, entry in enumerate(self.bake.datasets):
            if names and entry.target not in names:
                from bgit.config.declare import suggestion
                problems.append((("bake", "datasets", index, "target"), f"unknown target {entry.target!r} "
                                 f"(targets: {', '.join(names)}){suggestion(entry.target, names)}"))
        return problems

    def target(self, name: str) -> TargetConfig:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    def prompt_for(self, target: TargetConfig) -> PromptConfig:
        return target.prompt or self.prompt
