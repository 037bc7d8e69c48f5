"""Builders shared by the tests: generated datasets, tiny configs, sweep files, process cleanup."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "covid-ct-qsr" / "train"

# every mode the loader must handle, cycled over the generated files
MODES = ("L", "RGB", "RGBA", "I;16", "L-jpeg")


def write_image(path: Path, pixels: np.ndarray, mode: str) -> None:
    if mode == "I;16":
        Image.fromarray(pixels.astype(np.uint16) * 257).save(path.with_suffix(".png"))
    elif mode == "L-jpeg":
        Image.fromarray(pixels).save(path.with_suffix(".jpg"), quality=95)
    else:
        Image.fromarray(pixels).convert(mode).save(path.with_suffix(".png"))


def make_dataset(
    root: Path,
    *,
    groups_per_class: int = 12,
    per_group: int = 3,
    classes: tuple[str, str] = ("CT_COVID", "CT_NonCOVID"),
    seed: int = 0,
) -> Path:
    """Positive images carry bright round blobs (like ground-glass opacities); negatives do not.

    Files of one group share the prefix before '%', as in the COVID-CT data; sizes
    and aspect ratios vary, and modes cycle through L, RGB, RGBA, 16-bit and JPEG.
    """
    rng = np.random.default_rng(seed)
    k = 0
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for g in range(groups_per_class):
            for i in range(per_group):
                h, w = int(rng.integers(36, 60)), int(rng.integers(36, 60))
                img = rng.normal(70, 18, size=(h, w))
                yy, xx = np.mgrid[:h, :w]
                if c == 0:  # the positive class (first folder): two bright blobs
                    for _ in range(2):
                        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
                        r = rng.uniform(0.12, 0.2) * min(h, w)
                        img += 110 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
                pixels = np.clip(img, 0, 255).astype(np.uint8)
                write_image(folder / f"{name.lower()}{g}%{i}", pixels, MODES[k % len(MODES)])
                k += 1
    return root


def tiny_config(data: Path, **overrides: object):
    from trainers import TrainConfig

    values = dict(
        data=str(data), model="test_resnet", image_size=32, epochs=6, batch_size=16, lr=3e-3,
        warmup_epochs=0.5, patience=None, progress=False, val_fraction=0.2, holdout_fraction=0.2,
        eval_batch_size=64,
    )
    values.update(overrides)
    return TrainConfig(**values)


def two_class_folder(root: Path, classes: tuple[str, str], per_class: int = 2) -> Path:
    root = root / "two"
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(root / c / f"{c}{i}.png")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill a process and every descendant, by process id."""
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = parent.children(recursive=True) + [parent]
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def kill_children(spare: set[int] = frozenset()) -> None:
    """Whatever this test process started and left behind (Ray's daemons and workers), but `spare`."""
    me = psutil.Process()
    for child in me.children(recursive=True):
        if child.pid not in spare:
            kill_tree(child.pid)


def trial_workers(driver: int) -> list[psutil.Process]:
    """The driver's Ray worker processes that run a trial (Ray titles them after Tune's trainable)."""
    found = []
    for p in psutil.Process(driver).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


def child_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def sweep_yaml(path: Path, data: Path, **overrides: object) -> Path:
    import yaml

    raw = {
        "metric": "val_loss",  # continuous, so ASHA's cut-offs are never ties
        "mode": "min",
        "num_samples": 6,
        "max_concurrent": 2,
        "startup_trials": 2,
        "keep_checkpoints": 1,
        "asha": {"max_epochs": 4, "grace_period": 1, "reduction_factor": 2},
        "train": {
            "data": str(data), "model": "test_resnet", "image_size": 32, "val_fraction": 0.2,
            "holdout_fraction": 0.2, "patience": None, "num_threads": 1, "warmup_epochs": 0.5,
        },
        "space": {
            "lr": {"loguniform": [1e-4, 0.3]},
            "batch_size": {"choice": [8, 16]},
            "optimizer": {"choice": ["adamw", "sgd"]},
            "momentum": {"uniform": [0.8, 0.95], "when": {"optimizer": "sgd"}},
        },
    }
    raw.update(overrides)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def new_images(root: Path, sizes: list[int], n: int = 9) -> dict[int, np.ndarray]:
    """{image_size: (n, S, S) uint8}: n freshly generated images as trainers.decode_image gives them."""
    from trainers import decode_image

    folder = make_dataset(root, groups_per_class=3, per_group=2, seed=21)
    paths = sorted(folder.rglob("*.*"))[:n]
    return {s: np.stack([decode_image(p, s) for p in paths]) for s in sizes}


def reference_proba(model, images: dict[int, np.ndarray]) -> np.ndarray:
    """The in-process EnsembleModel's probabilities for `images` (its own device: CPU here)."""
    return model.predict_proba(images)


def lungsweep(*args: str) -> subprocess.CompletedProcess:
    """The command line as a user runs it, through the console script's entry point `main(argv)` in
    this process: an interpreter start-up (torch, timm) per call cost ~7 s on 2 cores. test_cli runs
    the installed command in a subprocess. An uncaught exception (a user's traceback) fails the test."""
    import contextlib
    import io
    import logging

    from lungsweep.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)  # what main's logging.basicConfig would print to stderr
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING if "-q" in args or "--quiet" in args else logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 2
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return subprocess.CompletedProcess(["lungsweep", *args], code, out.getvalue(), err.getvalue())
