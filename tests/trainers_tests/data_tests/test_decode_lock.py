"""Two processes preparing the same image cache at once: one decodes, the other waits and reads its file."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests_support import make_dataset

PREPARE = """
import os, sys, time
from pathlib import Path
import numpy as np
from trainers import TrainConfig, prepare_data
cfg = TrainConfig(data=sys.argv[1], image_size=48, progress=False, merge_duplicates=False)
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()  # imported, ready
while not go.exists():  # both start decoding within a millisecond or two
    time.sleep(0.001)
data = prepare_data(cfg)
print("cache" if isinstance(data.images.array, np.memmap) else "decoded", int(data.images.array.sum()))
"""


def test_two_processes_preparing_one_cache_decode_once(tmp_path):
    data = make_dataset(tmp_path / "data", groups_per_class=30, per_group=4, seed=5)  # 240 images
    env = {**os.environ, "LUNGSWEEP_CACHE": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", PREPARE, str(data), str(go), str(tmp_path / f"ready{i}")],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    kinds = sorted(out.split()[0] for out, _ in outputs)
    assert kinds == ["cache", "decoded"], outputs
    assert len({out.split()[1] for out, _ in outputs}) == 1, "both see the same images"
    assert list((tmp_path / "cache").glob("*-s48-*.npy")), "the cache was written"
