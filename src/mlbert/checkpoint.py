"""Resumable checkpoints, written so that a crash at any moment leaves one complete copy, and the one
rule for the run folders that hold them (`--resume`, `--overwrite`) that `train` and `pretrain` share.

Layout under the run folder:
    checkpoints/last/   model.safetensors, optimizer.pt, state.json  (resume from here)
    checkpoints/best/   model.safetensors, state.json                (best dev epoch so far)
Weights are safetensors; optimizer.pt holds only tensors and numbers and is read with
`torch.load(weights_only=True)`, never a general unpickle.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from .errors import ConfigError
from .fileio import atomic_open, read_json, recover_dir, remove_leftovers, remove_path, replace_dir, write_json

CHECKPOINTS = "checkpoints"


def has_checkpoint(out: Path) -> bool:
    """Whether a run folder holds a checkpoint to resume from."""
    return recover_dir(out / CHECKPOINTS / "last") is not None


def prepare_run_dir(
    out: Path, resume: bool, overwrite: bool, markers: tuple[str, ...], finished: tuple[str, ...], whole: bool = False
) -> None:
    """Check (and where allowed clear) the output folder of a resumable run, before anything is written.

    A folder holding any of `markers` is an earlier run of this kind. If that run left something to keep
    (a checkpoint, or one of the `finished` files), it is continued with `resume`, replaced with `overwrite`
    (the `markers` are removed, or with `whole` everything in the folder), and otherwise refused. If it died
    before its first checkpoint there is nothing to keep, so a plain run clears its markers and starts.
    A folder holding only other files is never touched. What interrupted writes left behind is removed.
    """
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pick one")
    if resume:
        if not out.is_dir():
            raise ConfigError(f"--resume: {out} does not exist; start without --resume")
        if not has_checkpoint(out):
            raise ConfigError(
                f"--resume: no checkpoint under {out / CHECKPOINTS} (the earlier run stopped before its first one); "
                "start without --resume"
            )
        remove_leftovers(out)
        remove_leftovers(out / CHECKPOINTS)
        return
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not any(name in markers for name in entries):
        raise ConfigError(
            f"--out {out} exists and holds other files ({', '.join(entries[:3])}...); choose a new or empty folder"
        )
    earlier = has_checkpoint(out) or any(name in finished for name in entries)
    if earlier and not overwrite:
        raise ConfigError(
            f"--out {out} holds an earlier run; pass --resume to continue it, --overwrite to "
            "replace it, or choose another folder"
        )
    _remove(out, entries if earlier and whole else markers)
    remove_leftovers(out)


def abandon_run_dir(out: Path, markers: tuple[str, ...], existed: bool) -> None:
    """After a run failed before its first checkpoint, leave its folder as it was found: remove what the
    run wrote (`markers`), and the folder itself if the run made it. A folder with a checkpoint is kept."""
    if not out.is_dir() or has_checkpoint(out):
        return
    _remove(out, markers)
    remove_leftovers(out)
    if not existed and not any(out.iterdir()):
        out.rmdir()


def _remove(out: Path, names) -> None:
    for name in names:
        remove_path(out / name)


def state_dict_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def rng_state() -> dict[str, Any]:
    """The random streams a resumed run must continue: the CPU's, and each GPU's when there is one.

    On a GPU dropout draws from the CUDA generator; with only the CPU state saved, a resumed GPU run
    drew other dropout masks than the run it continues (seen on an H200: epoch 3's dev F1 off by 0.008)."""
    return {
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(opt_state: dict[str, Any]) -> None:
    torch.set_rng_state(opt_state["rng"])
    cuda = opt_state.get("cuda_rng") or []  # checkpoints before 2026-11-26 hold the CPU state only
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """Serialise in memory and write through `atomic_open`: safetensors' own file writer makes a `.tmpXXXXXX`
    file of mode 0600 (unreadable by another serving account) that a kill leaves behind."""
    data = save({k: v.contiguous() for k, v in state.items()}, metadata={"format": "pt"})
    with atomic_open(path, "wb") as f:
        f.write(data)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def write_checkpoint(
    folder: Path, weights: dict[str, torch.Tensor], state: dict[str, Any], optimizer_state: dict[str, Any] | None = None
) -> None:
    """Write a complete checkpoint beside `folder`, then swap it in."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_weights(weights, tmp / "model.safetensors")
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
        write_json(tmp / "state.json", state)
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_checkpoint(folder: Path, with_optimizer: bool = True) -> tuple[dict, dict, dict | None] | None:
    """(weights, state, optimizer_state) of a checkpoint, or None when there is none."""
    found = recover_dir(folder)
    if found is None or not (found / "state.json").is_file():
        return None
    optimizer_state = None
    if with_optimizer and (found / "optimizer.pt").is_file():
        optimizer_state = torch.load(found / "optimizer.pt", map_location="cpu", weights_only=True)
    return load_weights(found / "model.safetensors"), read_json(found / "state.json"), optimizer_state
