"""torchrun + DDP plumbing (torchvision references' ``init_distributed_mode`` shape)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fgvc_core.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    enabled: bool
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """Rank 0 (or no torchrun at all); readable before the process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_device(device: str | None = None) -> torch.device:
    """``train.device`` -> a device of this machine: auto (CUDA when present), cpu, cuda or cuda:N.

    Raises:
        ConfigError: CUDA asked for where there is none, or a device index this machine does not have.
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"train.device={device} but this machine has no CUDA device (use auto or cpu)")
    chosen = torch.device(device)
    count = torch.cuda.device_count()
    if chosen.index is not None and chosen.index >= count:
        raise ConfigError(
            f"train.device={device} but this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
        )
    return chosen


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); NCCL on CUDA, gloo on CPU.

    Under torchrun each process takes the GPU of its ``LOCAL_RANK``; an index in ``train.device`` applies to a
    single-process run only.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    chosen = resolve_device(device)
    want_cuda = chosen.type == "cuda"
    if world <= 1:
        if want_cuda and chosen.index is not None:
            torch.cuda.set_device(chosen)  # autocast, GradScaler and new tensors follow the current device
        return DistInfo(False, 0, 1, 0, chosen)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    dev = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
    return DistInfo(True, rank, world, local_rank, dev)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values)
    return values


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
