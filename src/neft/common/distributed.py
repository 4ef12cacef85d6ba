"""Scale-out with ``torch.distributed`` (README, 'Scaling out'): one process group, started by ``torchrun``.

Training wraps the backbone (and IRS heads) in ``DistributedDataParallel``; Monte Carlo runs are sharded over the
same ranks and gathered, so every rank ends with the full, single-process-identical result. Backend: NCCL on CUDA,
gloo on CPU, chosen automatically. Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) everything here
is a no-op for one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = ["setup", "rank", "world_size", "is_main", "gather_runs", "all_reduce_", "agree", "barrier", "cleanup"]

T = TypeVar("T")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); returns the rank's device.

    On CUDA each rank uses ``cuda:LOCAL_RANK`` with the NCCL backend; on CPU the gloo backend.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _active():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if _active():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (if one was joined)."""
    if _active():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on rank 0, the only rank that writes files."""
    return rank() == 0


def gather_runs(local: list[tuple[int, T]]) -> list[T]:
    """All ranks' ``(run index, value)`` pairs, merged and ordered by run index (every rank gets the list)."""
    if not _active():
        return [value for _, value in sorted(local, key=lambda item: item[0])]
    parts: list[list[tuple[int, T]] | None] = [None] * world_size()
    dist.all_gather_object(parts, local)
    return [value for _, value in sorted((item for part in parts for item in part), key=lambda item: item[0])]


def all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op for one process); gloo needs CPU tensors unless on CUDA."""
    if _active():
        dist.all_reduce(tensor)
    return tensor


def average_buffers_(module: torch.nn.Module) -> None:
    """Average the floating-point buffers of ``module`` (BatchNorm running mean/var) over ranks, in place; no-op
    for one process. DistributedDataParallel broadcasts rank 0's buffers before each forward, so after the last
    step of an epoch every rank holds its own update; averaging makes the ranks agree (and their checkpoints and
    digests identical)."""
    if not _active():
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world_size()


def agree(action: Callable[[], T]) -> T:
    """Run ``action`` on every rank; if it fails on any rank, raise the first failure's error on all ranks.

    Keeps one rank's error (e.g. a missing data set) from leaving the others waiting in a collective forever.
    """
    try:
        result, error = action(), None
    except Exception as caught:  # noqa: BLE001 - re-raised below on every rank
        result, error = None, caught
    if not _active():
        if error is not None:
            raise error
        return result
    errors: list[tuple[str, str] | None] = [None] * world_size()
    dist.all_gather_object(errors, None if error is None else (type(error).__name__, str(error)))
    failed = [e for e in errors if e is not None]
    if failed:
        if error is not None:
            raise error
        name, message = failed[0]
        raise _ERROR_TYPES.get(name, RuntimeError)(f"another rank failed: {message}")
    return result


_ERROR_TYPES = {"ValueError": ValueError, "FileNotFoundError": FileNotFoundError,
                "DatasetNotFoundError": FileNotFoundError,
                "FileExistsError": FileExistsError, "RunExistsError": FileExistsError}
