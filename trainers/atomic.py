"""Writes that a crash can interrupt without leaving half a file or folder behind."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["atomic_write_text", "atomic_save_npy", "atomic_file", "atomic_dir", "recover_dir", "process_umask"]


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp makes 0600 whatever the umask: others could not read it
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def process_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask sets it to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # not Linux: set and restore (a brief window for other threads)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it takes the place of `path`.

    The old folder is moved aside first and removed last, so at every moment either
    the old or the new complete folder is at `path` or at its `.old` twin.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = path.with_name(f".{path.name}.old")
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~process_umask())  # mkdtemp makes 0700 whatever the umask
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(path: str | Path) -> Path:
    """After a crash between the two renames of atomic_dir, put the old folder back."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    if not path.exists() and old.exists():
        os.replace(old, path)
    return path
