"""A model directory vLLM can load: the resolved directory, or a cached clean copy of it.

A Hugging Face directory converted from a GGUF file may keep the GGUF
``quantization_config`` in its ``config.json`` (the weights are already dequantised);
vLLM would then try to load the directory as a GGUF model and fail. Such a directory
gets a sibling in the conversion cache whose ``config.json`` lacks that key, with the
other files hard-linked (copied across filesystems)::

    ${BGIT_CACHE:-~/.cache/bgit}/models/<dir name>-vllm-<12 hex of the model fingerprint>/

It is built in a temporary directory and renamed into place, so a reader never sees a
half-made one and the source directory is never modified. Any other quantization (AWQ,
GPTQ, ...) is vLLM's to load and is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bgit.models.errors import ModelError
from bgit.models.resolve import FINGERPRINT_FILE, cache_root, fingerprint_model_dir
from bgit.util.files import fsync_dir, write_atomic


def has_gguf_quantization(config: dict) -> bool:
    quantization = config.get("quantization_config")
    return isinstance(quantization, dict) and quantization.get("quant_method") == "gguf"


def vllm_model_dir(model_dir: str | os.PathLike) -> Path:
    """``model_dir`` itself when vLLM can load it as is, else its cached clean copy."""
    from bgit.store.writers import link_or_copy  # here: bgit.store is slow to import

    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {model_dir / 'config.json'}: {error}") from None
    if not has_gguf_quantization(config):
        return model_dir
    dest = cache_root() / "models" / f"{model_dir.name}-vllm-{fingerprint_model_dir(model_dir)[:12]}"
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for source in sorted(model_dir.iterdir()):
            if source.is_file() and source.name not in ("config.json", FINGERPRINT_FILE):
                link_or_copy(source, tmp / source.name)
        del config["quantization_config"]
        write_atomic(tmp / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
        try:
            os.rename(tmp, dest)
            fsync_dir(dest.parent)
        except OSError:
            if not (dest / "config.json").is_file():  # else another process made it first
                raise
    except OSError as error:
        raise ModelError(f"cannot make a vLLM copy of {model_dir} at {dest}: {error}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest

