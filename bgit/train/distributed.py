"""Several processes baking one adapter: a launcher (torchrun, deepspeed) starts one process
per device and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.

The split, defined once here:

- The global batch of one optimizer step is ``micro_batch_size x gradient_accumulation_steps x
  world size`` trajectories (``micro_batch_size`` is per process, as DeepSpeed's
  ``train_micro_batch_size_per_gpu``). The steps' examples depend only on (seed, epoch) and
  that global batch, so 1 process with micro_batch_size 4 and 2 processes with 2 train on the
  same steps; a ragged last step is split too.
- Rank r takes examples ``r, r + W, r + 2W, ...`` of each step. Every process holds the whole
  training set, so the step's response-token count (the loss's normaliser, DESIGN §2) is
  known to all without communication: the summed gradient over ranks equals the one-process
  gradient of the same global batch, up to float rounding.
- Collectives need the same number of calls on every rank (ZeRO's gradient hooks fire in each
  backward, ZeRO-3 gathers weights in each forward), so a rank with fewer micro-batches runs
  extra ones on a real example with weight 0.
- Plain torch sums the LoRA gradients over ranks (one flat all-reduce per step, the frozen
  weights never travel); DeepSpeed averages them, so its loss is multiplied by the world size.
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    """This process's place in a launch, as the launcher's environment says."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Launch":
        env = os.environ
        return cls(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))


def bind_device() -> None:
    """Make ``cuda`` mean this process's GPU (LOCAL_RANK); call before loading the model."""
    import torch

    launch = Launch.from_env()
    if launch.world > 1 and torch.cuda.is_available():
        torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_process_group(device_type: str, deepspeed: bool = False) -> None:
    """Join the launch's process group (gloo on CPU, nccl on CUDA) when there is one to join.

    DeepSpeed needs a group even alone: the variables then default to a one-process group.
    """
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        return
    backend = "nccl" if device_type == "cuda" else "gloo"
    if deepspeed:
        import deepspeed as ds

        for key, default in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
            os.environ.setdefault(key, default)
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        ds.init_distributed(dist_backend=backend)
    elif Launch.from_env().world > 1:
        dist.init_process_group(backend=backend, init_method="env://")


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def sum_over_ranks(values: list[float], world: int) -> list[float]:
    """Element-wise sums of ``values`` over every rank (float64)."""
    if world == 1:
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(value, world: int) -> list:
    """Every rank's ``value`` (picklable; between processes of one launch), on every rank."""
    if world == 1:
        return [value]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, value)
    return out


def _comm_device():
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _flat_apply(tensors, op) -> None:
    """Run the collective ``op`` on all ``tensors`` as one flat buffer, then copy back."""
    import torch

    flat = torch.cat([t.reshape(-1) for t in tensors])
    op(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_parameters(params, world: int) -> None:
    """Rank 0's values of ``params`` on every rank (identical replicas from the first step)."""
    if world == 1 or not params:
        return
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        _flat_apply([p.data for p in params], lambda flat: dist.broadcast(flat, src=0))


def sum_gradients(params, world: int) -> None:
    """Sum ``params``' gradients over ranks, in place (a missing gradient counts as zero)."""
    if world == 1 or not params:
        return
    import torch
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    _flat_apply([p.grad for p in params], dist.all_reduce)


def lost_rank(error: BaseException, rank: int, world: int):
    """A :class:`LostRankError` when ``error`` is a collective failing because a peer process
    went away (torch's DistError, or gloo's plain RuntimeError naming its transport); else None."""
    import torch.distributed as dist

    from bgit.train.errors import LostRankError

    message = str(error)
    failed = isinstance(error, getattr(dist, "DistError", ())) or (
        isinstance(error, RuntimeError) and "/gloo/" in message)
    if world == 1 or not failed:
        return None
    first = (message.splitlines() or [type(error).__name__])[0]
    detail = first.split("] ", 1)[1] if first.startswith("[") and "] " in first else first  # no source path
    return LostRankError(rank, world, detail.split(". This is typically")[0])


def padded_share(mine: list[list[int]], count: int, filler: list[int]) -> list[tuple[list[int], bool]]:
    """This rank's micro-batches as (batch, counted) pairs, padded to ``count`` (the same on
    every rank) with uncounted repeats of a real batch."""
    if count == 0:
        return []
    if not mine:
        mine, counted = [filler], [False]
    else:
        counted = [True] * len(mine)
    pairs = list(zip(mine, counted))
    return pairs + [(pairs[0][0], False)] * (count - len(pairs))


def split_count(n: int, world: int) -> int:
    """The most of ``n`` items any rank gets when they are dealt out one each in turn."""
    return math.ceil(n / world)
