"""Exporting a bake for use outside bgit: a PEFT adapter directory or a merged model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bgit.evaluate.bakes import ADAPTER_CONFIG, ADAPTER_WEIGHTS, Bake
from bgit.evaluate.errors import ExportError
from bgit.util.files import replace_dir_atomic
from bgit import __version__
from bgit.evaluate.models import load_baked

FORMATS = ("peft", "merged")

_README = """# {title}

A prompt-baked LoRA adapter exported by bgit {version} from commit `{sha}`.

- base model: `{base}`
- base model fingerprint (BLAKE3 of config + weights): `{fingerprint}`
- final train KL: {train_kl}; final eval KL: {eval_kl}

Load it with PEFT:

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained("<path of {base}>")
model = PeftModel.from_pretrained(base, "{out}")
```
"""


def export_bake(bake: Bake, out, fmt: str = "peft", device: str | None = None) -> Path:
    """Write the bake to ``out`` (must not exist or be empty); atomic via a sibling temp dir."""
    out = Path(out)
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if fmt == "peft":
            _export_peft(bake, tmp, out)
        else:
            _export_merged(bake, tmp, device)
        if out.exists():
            out.rmdir()
        if not replace_dir_atomic(tmp, out):
            raise ExportError(f"{out} appeared while exporting; nothing was written there")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _export_peft(bake: Bake, tmp: Path, out: Path) -> None:
    for path in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        data = bake.read(path)
        if data is None:
            raise ExportError(f"{bake.ref} has no {path}")
        (tmp / Path(path).name).write_bytes(data)
    metrics = bake.record.metrics
    (tmp / "README.md").write_text(_README.format(
        title=(bake.commit.message.splitlines() or ["bake"])[0] or "bake", version=__version__, sha=bake.sha,
        base=bake.base_model_name, fingerprint=bake.base_fingerprint, out=out,
        train_kl=metrics.final_train_kl, eval_kl=metrics.final_eval_kl))


def _export_merged(bake: Bake, tmp: Path, device: str | None) -> None:
    model, tokenizer, _ = load_baked(bake, device=device or "cpu", dtype="auto")
    merged = model.merge_and_unload()
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
