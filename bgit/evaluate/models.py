"""Loading a bake's base model with its adapter, scaled (half-baking) or not."""

from __future__ import annotations

from bgit.evaluate.bakes import Bake
from bgit.evaluate.errors import EvaluateError
from bgit.models import load_model, resolve_model
from bgit.util.yaml import load_bounded


def load_base(bake: Bake, device: str | None = None, dtype: str = "auto"):
    """-> (model, tokenizer, notes) of the bake's base model (bake.yml base_model.name)."""

    name = bake.base_model_name
    if not name:
        from bgit.evaluate.errors import NotABakeError
        raise NotABakeError(bake.ref, "base_model in bake.yml")
    resolved = resolve_model(name, revision=bake.record.base_model.revision)  # a hub model: the baked commit
    notes = []
    if bake.base_fingerprint and resolved.fingerprint != bake.base_fingerprint:
        notes.append(f"base model {name} has changed since the bake (fingerprint "
                     f"{resolved.fingerprint[:12]} != {bake.base_fingerprint[:12]})")
    model, tokenizer = load_model(resolved, dtype=dtype, device=device, trust_remote_code=trusts_remote_code(bake))
    return model, tokenizer, notes


def trusts_remote_code(bake: Bake) -> bool:
    """MODEL.trust_remote_code of the bake's input.yml. The bake being made (no repo: staged)
    comes from the user's own file; a commit may come from a clone, so its setting counts only
    once the user opts in locally (git config is never cloned)."""

    text = bake.read_text("input.yml")
    # Only this key is read: an older commit's input.yml need not pass today's checks.
    data = load_bounded(text, f"{bake.short}:input.yml") if text else None
    model = data.get("MODEL") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("trust_remote_code") is not True:
        return False
    if bake.repo is None:
        return True
    try:
        if bake.repo.git.config.get_bool("bgit.trustRemoteCode"):
            return True
    except KeyError:
        pass
    raise EvaluateError(f"{bake.ref}: its input.yml sets MODEL.trust_remote_code; to run the model's own code, "
                        "first `git config bgit.trustRemoteCode true`")


def with_adapter(model, adapter_dir, name: str = "default"):
    """Wrap ``model`` with the PEFT adapter in ``adapter_dir`` (inference only)."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():  # deprecation notices of transformers/peft internals, not the user's
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name, is_trainable=False)
    peft_model.eval()
    return peft_model


def scale_adapter(peft_model, scale: float, adapter: str = "default") -> int:
    """Multiply every LoRA module's scaling by ``scale`` (0 = base, 1 = the bake); -> modules scaled."""
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and adapter in module.scaling:
            module.scaling[adapter] = module.scaling[adapter] * scale
            count += 1
    return count


def load_baked(bake: Bake, scale: float = 1.0, device: str | None = None, dtype: str = "auto"):
    """-> (peft model, tokenizer, notes): the bake's base + adapter, its delta scaled by ``scale``."""
    model, tokenizer, notes = load_base(bake, device=device, dtype=dtype)
    peft_model = with_adapter(model, bake.adapter_dir())
    if scale != 1.0:
        scale_adapter(peft_model, scale)
    return peft_model, tokenizer, notes
