"""Sequential baking: a chain of adapters concatenated into one PEFT adapter, exactly."""

from __future__ import annotations

import json

import pytest
import torch

from bgit.train import concat_adapters
from bgit.train.errors import AdapterConcatError
from train_helpers import tiny_llama


def random_adapter(model, out_dir, r, alpha, targets, seed, rslora=False):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, init_lora_weights=False,
                        use_rslora=rslora, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    return peft_model


def test_concatenated_adapter_equals_the_chain(tmp_path):
    from peft import PeftModel

    probe = torch.tensor([[5, 3, 9, 200, 17, 42, 8]])
    # bake 1 on the base: r=4 on attention only
    random_adapter(tiny_llama(seed=0), tmp_path / "a1", r=4, alpha=8, targets=["q_proj", "v_proj"], seed=1)
    # bake 2 on base + bake 1 merged: r=6, all linear layers, rsLoRA scaling
    parent = PeftModel.from_pretrained(tiny_llama(seed=0), str(tmp_path / "a1")).merge_and_unload()
    chain = random_adapter(parent, tmp_path / "a2", r=6, alpha=3, targets="all-linear", seed=2, rslora=True)
    with torch.no_grad():
        expected = chain(input_ids=probe).logits
        base_logits = tiny_llama(seed=0)(input_ids=probe).logits

    out = concat_adapters([tmp_path / "a1", tmp_path / "a2"], tmp_path / "chain")
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 10 and config["lora_alpha"] == 10 and not config["use_rslora"]
    loaded = PeftModel.from_pretrained(tiny_llama(seed=0), str(out))
    with torch.no_grad():
        got = loaded(input_ids=probe).logits
    assert not torch.allclose(expected, base_logits, atol=1e-3)  # the chain changes the model
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_single_adapter_round_trips(tmp_path):
    from peft import PeftModel

    probe = torch.tensor([[1, 2, 3, 4]])
    ref = random_adapter(tiny_llama(seed=0), tmp_path / "a1", r=4, alpha=16, targets=["k_proj"], seed=3)
    with torch.no_grad():
        expected = ref(input_ids=probe).logits
    out = concat_adapters([tmp_path / "a1"], tmp_path / "one")
    with torch.no_grad():
        got = PeftModel.from_pretrained(tiny_llama(seed=0), str(out))(input_ids=probe).logits
    assert torch.allclose(got, expected, atol=1e-5)


def test_missing_adapter_files_are_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterConcatError) as err:
        concat_adapters([tmp_path / "empty"], tmp_path / "out")
    assert str(err.value) == (
        f"cannot concatenate adapter {tmp_path / 'empty'}: expected adapter_config.json and adapter_model.safetensors"
    )
