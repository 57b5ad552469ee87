"""What a bake trains and evals on, for the scripts beside this one: a bake repository's
input.yml and committed rollouts through bgit's own ``training_data`` (the split, the mix and
the student contexts a bake uses), SmolLM2-135M fp32 on 2 threads, its default LoRA."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # this checkout's bgit
import torch

from bgit.config import load_config
from bgit.models import load_model, resolve_model
from bgit.pipeline.dataset import training_data
from bgit.train.data import prepare_examples
from bgit.train.lora import attach_lora


def load(repo: str):
    """(frozen model, tokenizer, BakeConfig, TrainingData) of the bake repository ``repo``."""
    torch.set_num_threads(2)
    model, tokenizer = load_model(resolve_model("smollm2-135m"), dtype="float32", device="cpu")
    for p in model.parameters():
        p.requires_grad_(False)
    config = load_config(Path(repo) / "input.yml")
    dirs = {t.name: Path(repo) / "targets" / t.name for t in config.targets}
    return model, tokenizer, config.bake, training_data(config, dirs, tokenizer)


def prepared(examples, bake):
    return prepare_examples(examples, bake.data.max_length, bake.loss == "topk", bake.loss == "full")


def randomised_adapter(model, bake, scale: float = 0.01):
    """The default LoRA (A from torch's seed 0) with B drawn at random, so its KL is not the base's."""
    torch.manual_seed(0)
    peft = attach_lora(model, bake)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return peft
