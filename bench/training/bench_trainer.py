"""How much does `trainers.train` cost over a bare hand-written torch loop?

Both sides train the same model on the same prepared (decoded, cached, split) data,
prepared once and shared, with the same batch size, number of steps, optimizer (AdamW
over the same parameter groups, lr and weight decay), augmentation, `to_input`
preprocessing, label-smoothed cross entropy, gradient clipping, AMP (on CUDA), channels_last
memory format and seeds. What the bare loop leaves out is the trainer's own
bookkeeping: the per-step LR schedule, the progress hook, the running loss, the
per-epoch freeze / batch-norm pass, metrics, checkpoints and history files.

A third side, "before", is the bare loop in contiguous NCHW: the loop as lungsweep ran
it on the CPU before 2026-12-02 (on CUDA it was channels_last already). trainer / before
is the training speed-up that the channels_last memory format brought (goal on CPU >= 1.5x).

Two figures per side:

* steady-state training throughput, images/s: training images over the training
  steps' time only, timed exactly as trainers/loop.py times `train_seconds` (from before
  the epoch's shuffle to after its last optimizer step, no device synchronisation at the
  end), summed over every epoch but the first (warm-up) when there is more than one.
  Their ratio, trainer / bare, is the headline; the goal is >= 0.97.
* end-to-end seconds: the wall time of the whole `train()` call, against the bare
  side's setup + training + one plain val + holdout inference pass per epoch (what the
  trainer evaluates each epoch). The difference is mostly checkpoint writing.

Data loading share = data_seconds / train_seconds, where data_seconds is the time spent
per step indexing the uint8 images, normalising them (`to_input`) and augmenting them
(`augment_batch`), as loop.py records it. On CPU every op is synchronous, so the split
is exact; on CUDA the ops are asynchronous and data_seconds only counts the time to
enqueue them, so the share reads low there. The goal is < 5%.

Runs alternate trainer / bare (A B A B ...) `--repeats` times and each side keeps its
best run, which damps noise from other work on the machine.

    .venv/bin/python -m bench.training.bench_trainer                 # the default measurement
    .venv/bin/python -m bench.training.bench_trainer --smoke-test    # seconds, on generated data
"""
from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import DATA_FROM_ROOT, ROOT
from tests.tests_support import make_dataset
from trainers import TrainConfig, train
from trainers.augment import augment_batch
from trainers.inference import Preprocessing, predict_margins, to_input
from trainers.inference import resolve_device
from trainers.models.factory import create_model, optimizer_param_groups
from trainers.data.prepare import PreparedData, prepare_data
from trainers.models.pretrained import normalisation



@dataclass(frozen=True)
class EpochTiming:
    images: int  # training images seen
    train_seconds: float
    data_seconds: float
    eval_seconds: float  # val + holdout inference (the trainer's figure includes its metrics)


@dataclass(frozen=True)
class RunTiming:
    side: str
    epochs: list[EpochTiming]
    wall_seconds: float  # end to end

    def steady(self) -> list[EpochTiming]:
        return self.epochs[1:] if len(self.epochs) > 1 else self.epochs

    def images_per_second(self) -> float:
        steady = self.steady()
        return sum(e.images for e in steady) / sum(e.train_seconds for e in steady)

    def data_share(self) -> float:
        steady = self.steady()
        return sum(e.data_seconds for e in steady) / sum(e.train_seconds for e in steady)

    def train_seconds(self) -> float:
        return sum(e.train_seconds for e in self.epochs)

    def eval_seconds(self) -> float:
        return sum(e.eval_seconds for e in self.epochs)

    def other_seconds(self) -> float:
        """Setup, plus checkpoints and history files on the trainer side."""
        return self.wall_seconds - self.train_seconds() - self.eval_seconds()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DATA_FROM_ROOT,
                   help=f"class-per-folder dataset; relative paths are from the repository root (default {DATA_FROM_ROOT})")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=2, help="trainer/bare pairs, alternated; best run per side kept")
    p.add_argument("--smoke-test", action="store_true",
                   help="tiny run on generated data (test_resnet, 32 px, batch 8, 1 epoch) to check the script works")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.smoke_test:
        args.model, args.image_size, args.batch_size, args.epochs = "test_resnet", 32, 8, 1
    return args


def make_config(args: argparse.Namespace, data_dir: Path, cache_dir: Path | None) -> TrainConfig:
    """Defaults of TrainConfig except what the benchmark sets: both sides read this."""
    return TrainConfig(
        data=str(data_dir),
        model=args.model,
        image_size=args.image_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        device=args.device,
        cache_dir=str(cache_dir) if cache_dir else None,
        patience=None,
        progress=False,
    )


# --- the trainer side -------------------------------------------------------------


def run_trainer(cfg: TrainConfig, data: PreparedData, out_dir: Path) -> RunTiming:
    t0 = time.perf_counter()
    result = train(cfg, out_dir, data=data)
    wall = time.perf_counter() - t0
    epochs = [
        EpochTiming(
            images=round(m["train_images_per_second"] * m["train_seconds"]),
            train_seconds=m["train_seconds"],
            data_seconds=m["data_seconds"],
            eval_seconds=m["epoch_seconds"] - m["train_seconds"],
        )
        for m in result.history
    ]
    return RunTiming("trainer", epochs, wall)


# --- the bare side: the same training, written out by hand -----------------------------


def run_bare(cfg: TrainConfig, data: PreparedData, *, channels_last: bool = True) -> RunTiming:
    """channels_last=False: the loop as lungsweep ran it on the CPU before 2026-12-02 (contiguous NCHW)."""
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    if cuda:  # as loop.py sets them
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    split = data.split
    labels = torch.as_tensor(data.dataset.binary_labels)
    train_images = torch.as_tensor(np.asarray(data.images.array[split.train])).to(device)
    train_labels = labels[split.train].to(device)
    val_images = np.asarray(data.images.array[split.val])
    holdout_images = np.asarray(data.images.array[split.holdout])

    model = create_model(cfg.model, drop_rate=cfg.drop_rate)
    mean, std = normalisation(model)
    prep = Preprocessing(image_size=cfg.image_size, mean=mean, std=std)
    model.to(device)
    if channels_last:  # as loop.py does on every device
        model.to(memory_format=torch.channels_last)
    # the trainer's weight-decay parameter groups: part of the recipe, not of the loop
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(split.train) // cfg.batch_size)

    epochs = []
    for _ in range(cfg.epochs):
        if cuda:
            torch.cuda.synchronize()  # the trainer's epoch starts after a checkpoint, i.e. idle
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(split.train), generator=gen)[: steps * cfg.batch_size].view(steps, -1)
        data_seconds = 0.0
        for batch_idx in order:
            td = time.perf_counter()
            idx = batch_idx.to(device)
            x = to_input(train_images[idx], prep, device, channels_last=channels_last)
            x = augment_batch(x, strength=cfg.aug_strength, hflip=cfg.hflip, vflip=cfg.vflip, generator=gen)
            target = train_labels[idx]
            data_seconds += time.perf_counter() - td
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                loss = F.cross_entropy(model(x).float(), target, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        train_seconds = time.perf_counter() - t0  # no sync, as in loop.py

        te = time.perf_counter()
        for images in (val_images, holdout_images):
            predict_margins(model, images, prep, device=device, batch_size=cfg.eval_batch_size,
                            autocast_dtype=amp_dtype)
        if not channels_last:  # predict_margins stores the weights channels_last: train on as before
            model.to(memory_format=torch.contiguous_format)
        epochs.append(EpochTiming(order.numel(), train_seconds, data_seconds, time.perf_counter() - te))
    return RunTiming("bare" if channels_last else "before", epochs, time.perf_counter() - t_start)


# --- running and reporting ------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu ({line.split(':', 1)[1].strip()})"
    except OSError:
        pass
    return f"cpu ({platform.processor() or platform.machine()})"


def print_header(args: argparse.Namespace, cfg: TrainConfig, data: PreparedData) -> None:
    import timm

    device = resolve_device(cfg.device)
    split = data.split
    steps = max(1, len(split.train) // cfg.batch_size)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"date:    {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"host:    python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}")
    print(f"device:  {device_name(device)}; torch threads {torch.get_num_threads()} (torch's default, both sides)")
    print(f"data:    {data.dataset.root}: train {len(split.train)}, val {len(split.val)}, "
          f"holdout {len(split.holdout)} images at {cfg.image_size} px")
    print(f"run:     {cfg.model}, batch {cfg.batch_size}, {steps} steps x {cfg.epochs} epochs, "
          f"{args.repeats} repeat(s) per side; steady state = "
          + ("epochs 2.." if cfg.epochs > 1 else "epoch 1 (only one)"))
    print()


def print_report(runs: list[RunTiming]) -> None:
    trainer = max((r for r in runs if r.side == "trainer"), key=RunTiming.images_per_second)
    bare = max((r for r in runs if r.side == "bare"), key=RunTiming.images_per_second)
    before = max((r for r in runs if r.side == "before"), key=RunTiming.images_per_second)
    for side in ("trainer", "bare", "before"):
        figures = " ".join(f"{r.images_per_second():.1f}" for r in runs if r.side == side)
        print(f"{side} images/s per repeat: {figures}")
    print()
    ratio = trainer.images_per_second() / bare.images_per_second()
    print(f"{'side':8} {'images/s':>9} {'ratio':>6} {'data share':>11} {'train s':>8} "
          f"{'eval s':>7} {'other s':>8} {'end-to-end s':>13}")
    for run, r in ((trainer, ratio), (bare, 1.0), (before, before.images_per_second() / bare.images_per_second())):
        print(f"{run.side:8} {run.images_per_second():9.1f} {r:6.3f} {run.data_share():11.1%} "
              f"{run.train_seconds():8.2f} {run.eval_seconds():7.2f} {run.other_seconds():8.2f} "
              f"{run.wall_seconds:13.2f}")
    print("(images/s, ratio and data share: steady state, best repeat per side; train/eval/other/end-to-end:")
    print(" that run, all epochs; other = setup, plus checkpoints and history files for the trainer)")
    print()
    print(f"ratio {ratio:.2f} (goal >= 0.97); data loading {trainer.data_share():.1%} of step time (goal < 5%)")
    speedup = trainer.images_per_second() / before.images_per_second()
    print(f"trainer against the loop before 2026-12-02 (bare, contiguous NCHW; on CUDA that loop was channels_last "
          f"already): {speedup:.2f}x (goal on CPU >= 1.5x)")


def benchmark(args: argparse.Namespace, data_dir: Path, workdir: Path, cache_dir: Path | None) -> None:
    cfg = make_config(args, data_dir, cache_dir)
    data = prepare_data(cfg)  # once: both sides and every repeat train on this
    print_header(args, cfg, data)
    runs = []
    for i in range(args.repeats):
        runs.append(run_trainer(cfg, data, workdir / f"run{i}"))
        runs.append(run_bare(cfg, data))
        runs.append(run_bare(cfg, data, channels_last=False))
    print_report(runs)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        workdir = Path(tmp)
        if args.smoke_test:
            data_dir = make_dataset(workdir / "data" / "train")
            cache_dir: Path | None = workdir / "cache"
        else:
            data_dir = (ROOT / args.data).resolve()  # an absolute --data stays as it is
            cache_dir = None  # the user's decoded-image cache, shared with real runs
        benchmark(args, data_dir, workdir, cache_dir)


if __name__ == "__main__":
    main()
