"""Where this process stands in a distributed run started by `accelerate launch` or `torchrun`.

The launchers describe the run in environment variables (RANK, WORLD_SIZE); reading them needs no
process group, so a plain single-process run never starts one. The engine itself is Accelerate
over torch.distributed (gloo on CPUs, NCCL on GPUs): see train.py.
"""

from __future__ import annotations

import os


def process_rank() -> int:
    """0 in a single process and in the main process of a distributed run."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_state():
    """Accelerate's view of the run (one shared object per process).

    On a machine without CUDA it must be told `cpu=True`, or it ignores the launcher's RANK and
    WORLD_SIZE and runs every process alone instead of joining them over gloo.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if world_size() > 1:
        process_state().wait_for_everyone()
