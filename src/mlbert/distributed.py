"""Where this process stands in a distributed run started by `accelerate launch` or `torchrun`.

The launchers describe the run in environment variables (RANK, WORLD_SIZE); reading them needs no
process group, so a plain single-process run never starts one. The engine itself is Accelerate
over torch.distributed (gloo on CPUs, NCCL on GPUs): see train.py.
"""

from __future__ import annotations

import os

from .errors import ConfigError


def process_rank() -> int:
    """0 in a single process and in the main process of a distributed run."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def use_cpu() -> bool:
    """Whether Accelerate runs this process on CPUs: when torch sees no GPU.

    A launch of more processes on one machine than it has GPUs would otherwise stop deep inside
    NCCL with "invalid device ordinal" in the process left without a GPU (seen: 2 processes on a
    1-GPU H200)."""
    import torch

    gpus = torch.cuda.device_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if 0 < gpus < local:
        raise ConfigError(
            f"{local} processes on this machine but only {gpus} GPU(s) that torch can see: start "
            f"at most {gpus} (torchrun --nproc_per_node, accelerate launch --num_processes), or "
            f"hide the GPUs (CUDA_VISIBLE_DEVICES=) to run {local} processes on the CPUs"
        )
    return gpus == 0


def process_state():
    """Accelerate's view of the run (one shared object per process).

    On a machine without CUDA it must be told `cpu=True`, or it ignores the launcher's RANK and
    WORLD_SIZE and runs every process alone instead of joining them over gloo.
    """
    from accelerate import PartialState

    return PartialState(cpu=use_cpu())


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    if world_size() > 1:
        process_state().wait_for_everyone()
