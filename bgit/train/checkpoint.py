"""Resumable checkpoints (by epoch and/or by step, BAKE.checkpoint), written atomically and
without pickle.

Layout::

    work_dir/checkpoints/
      step-00000012-epoch-0001/   after optimizer step 12, with 1 epoch complete
        state.json            epoch, step, fingerprint, world size, metrics so far, the loop's
                              running sums, RNG states (JSON), optimizer param groups, scheduler
        adapter.safetensors   the trainable LoRA tensors
        optimizer.safetensors optimizer state ("state.<param index>.<name>") + torch RNG of rank 0
                              ("rng.torch") and of the other ranks ("rank<r>.rng.torch")
        deepspeed/            the engine's own checkpoint (DeepSpeed runs only; its own format,
                              one shard per rank)
      .tmp-step-00000018-epoch-0001/   a checkpoint being written; renamed when complete

Names sort by step; the last ``-NNNN`` is the number of complete epochs. Only the newest
complete checkpoint is kept. With several ranks, rank 0 writes everything but the DeepSpeed
shards and renames the checkpoint into place once every rank's part is on disk; every rank
reads it back.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bgit.train.distributed import barrier, gather_objects
from bgit.train.errors import CheckpointMismatchError

STATE = "state.json"
ADAPTER = "adapter.safetensors"
OPTIMIZER = "optimizer.safetensors"
DEEPSPEED = "deepspeed"


@dataclass
class Checkpoint:
    path: Path
    epoch: int  # epochs completed
    step: int  # optimizer steps completed
    metrics: list[dict]
    state: dict
    tensors: dict

    @property
    def loop(self) -> dict:
        """The training loop's running sums at the checkpoint (tokens, the epoch's KL so far)."""
        return self.state.get("loop", {})


def checkpoint_name(step: int, epoch: int) -> str:
    return f"step-{step:08d}-epoch-{epoch:04d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_state() -> tuple[dict, dict]:
    np_state = np.random.get_state()
    as_json = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return as_json, tensors


def _rank_prefix(rank: int) -> str:
    return f"rank{rank}." if rank else ""


def _restore_rng(state: dict, tensors: dict, rank: int = 0) -> None:
    py = state["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["rng"]["numpy"]
    np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), npy[2], npy[3], npy[4]))
    prefix = _rank_prefix(rank)
    torch.set_rng_state(tensors[f"{prefix}rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith(f"{prefix}rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _split_optimizer(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def _join_optimizer(meta: dict, tensors: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(root: Path, epoch: int, step: int, fingerprint: str, metrics: list[dict],
                    adapter_tensors: dict, optimizer=None, scheduler=None, engine=None,
                    rank: int = 0, world: int = 1, loop: dict | None = None) -> Path:
    """``epoch``: epochs complete; ``loop``: running sums the loop needs to resume mid-epoch.
    Every rank calls it (barriers, the RNG gather, DeepSpeed's shards); rank 0 writes the rest."""
    from safetensors.torch import save_file

    final = root / checkpoint_name(step, epoch)
    tmp = root / f".tmp-{final.name}"  # one writer per work dir (the repository lock)
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    barrier()
    rng_json, rng_tensors = _rng_state()
    every_rng = gather_objects(rng_tensors, world)  # each rank's own dropout stream
    state = {"version": 2, "epoch": epoch, "step": step, "fingerprint": fingerprint, "world": world,
             "metrics": metrics, "rng": rng_json, "loop": loop or {}}
    if engine is not None:
        engine.save_checkpoint(str(tmp / DEEPSPEED), tag="epoch")  # every rank writes its shard
        barrier()
    if rank != 0:
        return final
    tensors = {f"{_rank_prefix(r)}{name}": value for r, part in enumerate(every_rng) for name, value in part.items()}
    if engine is None:
        state["optimizer"], opt_tensors = _split_optimizer(optimizer)
        state["scheduler"] = scheduler.state_dict()
        tensors.update(opt_tensors)
    save_file({k: v.detach().cpu().contiguous() for k, v in adapter_tensors.items()}, str(tmp / ADAPTER))
    save_file(tensors, str(tmp / OPTIMIZER))
    (tmp / STATE).write_text(json.dumps(state, default=_jsonable))
    for f in (tmp / ADAPTER, tmp / OPTIMIZER, tmp / STATE):
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in root.iterdir():
        if old != final and old.name.startswith(("step-", "epoch-", ".tmp-")):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if torch.is_tensor(value):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def load_latest(root: Path, fingerprint: str, world: int = 1) -> Checkpoint | None:
    """The newest complete checkpoint, or None. ``world``: this run's number of ranks; a
    checkpoint written by another number trained on other steps (the global batch differs)."""
    from safetensors.torch import load_file

    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.name.startswith("step-") and (p / STATE).is_file())
    if not done:
        return None
    path = done[-1]
    state = json.loads((path / STATE).read_text())
    if state.get("world", 1) != world:
        written = state.get("world", 1)
        raise CheckpointMismatchError(path, f"was written with WORLD_SIZE={written}, this run has WORLD_SIZE={world}; "
                                      f"relaunch with WORLD_SIZE={written} or remove it to start over")
    if state.get("fingerprint") != fingerprint:
        raise CheckpointMismatchError(path)
    tensors = load_file(str(path / OPTIMIZER))
    tensors.update({f"adapter.{k}": v for k, v in load_file(str(path / ADAPTER)).items()})
    return Checkpoint(path, state["epoch"], state["step"], state["metrics"], state, tensors)


def restore(ckpt: Checkpoint, set_adapter, optimizer=None, scheduler=None, engine=None, rank: int = 0) -> None:
    """Put adapter weights, optimizer, scheduler and RNG back as they were at the checkpoint
    (this rank's RNG)."""
    set_adapter({k[len("adapter."):]: v for k, v in ckpt.tensors.items() if k.startswith("adapter.")})
    if engine is not None:
        engine.load_checkpoint(str(ckpt.path / DEEPSPEED), tag="epoch", load_module_strict=False)
    else:
        optimizer.load_state_dict(_join_optimizer(ckpt.state["optimizer"], ckpt.tensors))
        scheduler.load_state_dict(ckpt.state["scheduler"])
    _restore_rng(ckpt.state, ckpt.tensors, rank)
