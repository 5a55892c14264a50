"""Atomic writes: a crash or a bad input never leaves a half-written file or folder behind."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

# Errors of the place a file goes to, not of the program: reported as OutputError with the path.
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM}


def cannot_write(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {e.strerror or e}; check that the place exists, is writable and has room")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; it replaces `path` only if the block ends without error.

    A full disk, a read-only place or a folder in the way raise OutputError naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give the path of a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise cannot_write(path, e) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the result should be an ordinary file
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in OUTPUT_ERRNOS:
            raise cannot_write(path, e) from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, allow_nan=True)
        f.write("\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Swap a fully written `tmp_dir` into `final_dir`; at every moment one complete copy exists.

    The old copy is kept as `<final>.old` until the new one is in place, and `recover_dir`
    brings it back if we die between the two renames.
    """
    old = final_dir.with_name(final_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


def recover_dir(final_dir: Path) -> Path | None:
    """The complete copy of a folder written by `replace_dir`, or None if there is none."""
    if final_dir.is_dir():
        return final_dir
    old = final_dir.with_name(final_dir.name + ".old")
    return old if old.is_dir() else None


# Names of what an interrupted write leaves: atomic_open's `.NAME.XXXX.tmp`, write_checkpoint's and the
# tokenizer's temporary folders, and the `.tmpXXXXXX` files that safetensors' own writer used to make.
LEFTOVER_PATTERNS = (".*.tmp", ".tmp??????", ".tokenizer.*", ".last.*", ".best.*")


def remove_leftovers(folder: Path) -> None:
    """Delete what interrupted writes left in `folder` (not below it)."""
    if folder.is_dir():
        for pattern in LEFTOVER_PATTERNS:
            for path in folder.glob(pattern):
                remove_path(path, ignore_errors=True)  # a leftover that will not go is no reason to stop


def remove_path(path: Path, ignore_errors: bool = False) -> None:
    """Delete a file, a link or a whole folder, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            if not ignore_errors:
                raise
