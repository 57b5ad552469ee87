"""The KL trainer: bake a prompt into a LoRA adapter (DESIGN §2).

Public API (docs/contracts.md §train)::

    from bgit.train import TrainExample, train_adapter, topk_kl, full_kl, generalized_jsd
    result = train_adapter(model, tokenizer, train, eval, bake, work_dir, progress=None)
    concat_adapters([adapter1_dir, adapter2_dir], out_dir)   # a bake chain as one adapter

``bake`` is the bake's :class:`bgit.config.schema.BakeConfig`: every training setting is
declared once, in bgit.config; the trainer keeps no defaults or ranges of its own.

torch/transformers/peft are imported lazily so that ``bgit --help`` stays fast.
"""

from bgit.train.data import TrainExample
from bgit.train.errors import TrainError

__all__ = ["TrainExample", "TrainError", "TrainResult", "train_adapter", "topk_kl", "full_kl",
           "generalized_jsd", "concat_adapters"]


def __getattr__(name):
    if name in ("train_adapter", "TrainResult"):
        from bgit.train import loop

        return getattr(loop, name)
    if name in ("topk_kl", "full_kl", "generalized_jsd"):
        from bgit.train import loss

        return getattr(loss, name)
    if name == "concat_adapters":
        from bgit.train.lora import concat_adapters

        return concat_adapters
    raise AttributeError(name)
