"""Atomic writes honour the process umask, so MODEL_DIR and RUN_DIR are readable by others on shared storage."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from trainers.atomic import atomic_dir, atomic_file, atomic_save_npy, atomic_write_text, process_umask


@pytest.fixture
def umask():
    before = os.umask(0o022)
    os.umask(before)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                      (0o077, 0o600, 0o700)])
def test_atomic_writes_apply_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert process_umask() == mask
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_save_npy(tmp_path / "a.npy", np.zeros(3))
    with atomic_file(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "model") as folder:
        (folder / "manifest.json").write_text("{}")
        atomic_write_text(folder / "nested.txt", "x")
    for name in ("a.json", "a.npy", "b.bin", "model/manifest.json", "model/nested.txt"):
        assert mode(tmp_path / name) == file_mode, f"{name}: {oct(mode(tmp_path / name))}"
    assert mode(tmp_path / "model") == dir_mode, oct(mode(tmp_path / "model"))
    assert process_umask() == mask, "reading the umask must not change it"
