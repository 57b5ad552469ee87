"""Real payload files for the store tests."""

import base64
import json

import numpy as np
from safetensors.numpy import save_file


def bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16, round-to-nearest-even)."""
    u = values.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def write_mixed_safetensors(path, seed=0, scale=1.0):
    """fp32, bf16, fp16 and int64 tensors; bf16 written via safetensors' raw-bytes path."""
    rng = np.random.default_rng(seed)
    tensors = {
        "layer.0.weight": (scale * rng.standard_normal((64, 48))).astype(np.float32),
        "layer.0.half": rng.standard_normal((33, 7)).astype(np.float16),
        "layer.1.idx": rng.integers(-1000, 1000, size=(129,), dtype=np.int64),
    }
    save_file(tensors, str(path), metadata={"format": "pt"})
    bf = bf16(0.02 * rng.standard_normal((96, 80)))
    _add_raw_tensor(path, "layer.2.bf16", "BF16", [96, 80], bf.tobytes())
    return tensors, bf


def _add_raw_tensor(path, name, dtype, shape, data: bytes):
    """Append a tensor with a dtype numpy lacks (bf16) by rewriting header + data."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(body), len(body) + len(data)]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + body + data)


def rollout_rows(n, seed=0, k=20):
    """Rows shaped like bgit rollout.jsonl (text + base64 top-K arrays)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        t = int(rng.integers(8, 40))
        rows.append(json.dumps({
            "stim_id": f"{i:012x}", "stim": f"question {i} " * 3, "traj": 0,
            "response": "answer " * t, "response_ids": rng.integers(0, 49152, t).tolist(), "k": k,
            "topk_ids": base64.b64encode(rng.integers(0, 49152, t * k).astype("<i4").tobytes()).decode(),
            "topk_logprobs": base64.b64encode((-rng.exponential(2, t * k)).astype("<f4").tobytes()).decode(),
            "tail_logprob": base64.b64encode((-rng.exponential(5, t)).astype("<f4").tobytes()).decode(),
        }, sort_keys=True))
    return rows


def write_jsonl(path, rows):
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
