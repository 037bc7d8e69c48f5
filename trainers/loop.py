"""The training loop: one flat function, read top to bottom.

`train` knows nothing of Ray. A caller that wants to watch or stop a run passes
`on_epoch`, called after each epoch's checkpoint is on disk; returning True stops.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from timm.scheduler import CosineLRScheduler

from .augment import augment_batch
from .checkpoint import load_train_state, load_weights, package_versions, read_meta, save_checkpoint
from .config import TrainConfig
from .errors import ConfigError
from .inference import Preprocessing, mixed_precision_dtype, predict_margins, resolve_device, sigmoid, to_input
from .metrics import binary_metrics
from .models.factory import create_model, optimizer_param_groups, set_trainable
from .data.prepare import PreparedData, prepare_data
from .models.pretrained import load_pretrained, normalisation
from .progress import progress_bar
from .run_folder import (BEST, LAST, check_resumable, resume_point, write_config, write_history, write_metrics,
                         write_skipped)

__all__ = ["EpochReport", "TrainResult", "train"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    metrics: dict[str, float]
    is_best: bool
    checkpoint_dir: Path  # this epoch's full checkpoint (weights, meta, training state)
    best_dir: Path
    stopping: str | None = None  # why the trainer stops after this epoch ("max_epochs", "patience"), or None


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    stop_reason: str
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    on_epoch: Callable[[EpochReport], bool | None] | None = None,
    resume: bool = False,
    resume_from: str | Path | None = None,
    data: PreparedData | None = None,
) -> TrainResult:
    """Train one model into the run folder `out_dir` (trainers.run_folder says what it holds).

    resume: continue from `out_dir/last` if it exists. resume_from: continue from
    that checkpoint folder instead (a sweep's restored trial). The data audit is the
    calling command's job (trainers.audit.audit_into), not the loop's.
    """
    out_dir = Path(out_dir)
    resume_from = resume_point(out_dir, resume=resume, resume_from=resume_from)
    last_dir, best_dir = out_dir / LAST, out_dir / BEST

    # 1. device, threads, seeds
    device = resolve_device(cfg.device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp_dtype = mixed_precision_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    # 2. data: decoded once (cached), split by group
    data = data or prepare_data(cfg)
    ds, split = data.dataset, data.split
    # A fold model's validation part is its out-of-fold part: choosing an epoch on it would
    # make the out-of-fold predictions optimistic, so a fold trains `epochs` and keeps the last.
    fold_mode = split.fold is not None
    if split.folds and not fold_mode:
        raise ConfigError("cv_folds > 1 trains one model per fold: use trainers.train_bag "
                          "(lungsweep train --cv-folds K), or set 'fold' to train one fold")
    y = torch.as_tensor(ds.binary_labels)
    # the training images live on the device as uint8: no loader, no per-step copies
    train_images = torch.as_tensor(np.asarray(data.images.array[split.train])).to(device)
    train_labels = y[split.train].to(device)
    val_images = np.asarray(data.images.array[split.val])
    holdout_images = np.asarray(data.images.array[split.holdout])

    # 3. model, pretrained weights, preprocessing
    model = create_model(cfg.model, drop_rate=cfg.drop_rate)
    pretrained_source = None
    mean, std = normalisation(model)
    if cfg.pretrained:
        info = load_pretrained(model, cfg.model, weights_file=cfg.pretrained_file)
        pretrained_source, mean, std = info.source, info.mean, info.std
    prep = Preprocessing(image_size=cfg.image_size, mean=mean, std=std, window=cfg.window, slices=cfg.slices)
    # channels_last on every device: on 2 CPU cores too a training step runs 1.4x faster (bench/training/bench_trainer.py)
    model.to(device, memory_format=torch.channels_last)

    # 4. optimizer and a per-step cosine schedule with warmup
    steps_per_epoch = max(1, len(split.train) // cfg.batch_size)
    groups = optimizer_param_groups(model, cfg)
    if cfg.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=max(1, total_steps - warmup_steps),
        lr_min=cfg.lr * cfg.min_lr_ratio,
        warmup_t=warmup_steps,
        warmup_lr_init=cfg.lr * 0.01,
        warmup_prefix=True,
        t_in_epochs=False,
    )

    # 5. state, or the state we resume from
    start_epoch, step, best_value, best_epoch, bad_epochs = 0, 0, -math.inf, 0, 0
    history: list[dict[str, float]] = []
    best_metrics: dict[str, float] = {}
    if resume_from is not None:
        state = _resume(Path(resume_from), cfg, data, model, optimizer, gen)
        start_epoch, step = state["epoch"], state["step"]
        best_value, best_epoch, bad_epochs = state["best_value"], state["best_epoch"], state["bad_epochs"]
        history, best_metrics = state["history"], state["best_metrics"]
        log.info("resuming %s after epoch %d", resume_from, start_epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_config(out_dir, cfg)
    if data.images.skipped:
        write_skipped(out_dir, data.images.skipped)
    base_meta = {
        "config": cfg.to_dict(),
        "model": cfg.model,
        "classes": list(ds.classes),
        "positive": ds.positive,
        "preprocessing": prep.to_dict(),
        "data_fingerprint": data.fingerprint,
        "split": data.split_summary(cfg),
        "pretrained": pretrained_source,
        "versions": package_versions(),
    }

    sign = -1.0 if cfg.monitor == "val_loss" else 1.0  # we maximise sign * metric
    events = _tensorboard(cfg.tensorboard)
    stop_reason = "max_epochs"
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        # 6. which parameters learn this epoch (two-phase fine-tuning)
        phase = set_trainable(model, cfg, epoch)
        model.train()
        for m in model.modules():  # frozen layers keep their pretrained batch-norm statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                if cfg.freeze_bn or not any(p.requires_grad for p in m.parameters()):
                    m.eval()

        # 7. one pass over the training split
        order = torch.randperm(len(split.train), generator=gen)[: steps_per_epoch * cfg.batch_size]
        order = order.view(steps_per_epoch, -1) if len(order) else order.view(1, -1)
        loss_sum, data_seconds = torch.zeros((), device=device), 0.0
        for batch_idx in progress_bar(order, total=len(order), desc=f"epoch {epoch + 1}", enabled=cfg.progress):
            td = time.perf_counter()
            idx = batch_idx.to(device)
            x = to_input(train_images[idx], prep, device, channels_last=True)
            x = augment_batch(x, strength=cfg.aug_strength, hflip=cfg.hflip, vflip=cfg.vflip, generator=gen)
            target = train_labels[idx]
            data_seconds += time.perf_counter() - td
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            scheduler.step_update(step)
            loss_sum += loss.detach()
        if cuda:
            torch.cuda.synchronize()  # queued kernels belong to training time
        train_seconds = time.perf_counter() - t0

        # 8. validation (and holdout predictions, kept for the ensemble; never used here), in fp32:
        # calibration is fitted on these margins, and export and predict run fp32
        val_margin = predict_margins(model, val_images, prep, device=device, batch_size=cfg.eval_batch_size)
        holdout_margin = predict_margins(model, holdout_images, prep, device=device, batch_size=cfg.eval_batch_size)
        y_val = ds.binary_labels[split.val]
        val = binary_metrics(y_val, sigmoid(val_margin))
        metrics = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum) / len(order),
            "val_loss": val.pop("nll"),
            **{f"val_{k}": v for k, v in val.items()},
            "lr": max(g["lr"] for g in optimizer.param_groups),
            "epoch_seconds": time.perf_counter() - t0,
            "train_seconds": train_seconds,
            "data_seconds": data_seconds,
            "train_images_per_second": len(order) * order.shape[-1] / train_seconds,
            **_gpu_memory(device),
        }
        history.append(metrics)
        if events is not None:
            for key, v in metrics.items():
                events.add_scalar(key, v, epoch + 1)
            events.flush()
        value = sign * metrics[cfg.monitor]
        is_best = fold_mode or (not math.isnan(value) and value > best_value)
        if is_best:
            best_value, best_epoch, bad_epochs, best_metrics = value, epoch + 1, 0, metrics
        else:
            bad_epochs += 1
        # the run's best so far: what a searcher should learn from when late epochs overfit
        metrics[f"best_{cfg.monitor}"] = sign * best_value

        # 9. checkpoints: last/ every epoch (to resume), best/ when the monitored metric improves
        meta = {
            **base_meta,
            "epoch": epoch + 1,
            "best_epoch": best_epoch,
            "metrics": metrics,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "predictions": {
                "val": _by_id(ds, split.val, val_margin),
                "holdout": _by_id(ds, split.holdout, holdout_margin),
            },
        }
        train_state = {
            "epoch": epoch + 1, "step": step, "best_value": best_value, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "history": history, "best_metrics": best_metrics,
            "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state(),
        }
        save_checkpoint(last_dir, model=model, meta=meta, train_state=train_state)
        if is_best:
            save_checkpoint(best_dir, model=model, meta=meta)
        write_history(out_dir, history)
        log.info(
            "epoch %d/%d  %s  train_loss %.4f  val_loss %.4f  val_auc %.4f  val_acc %.4f  lr %.2e  %.1fs%s",
            epoch + 1, cfg.epochs, phase, metrics["train_loss"], metrics["val_loss"], metrics["val_auc"],
            metrics["val_accuracy"], metrics["lr"], metrics["epoch_seconds"], "  *best" if is_best else "",
        )

        # 10. patience may stop us; so may the caller
        out_of_patience = not fold_mode and cfg.patience is not None and bad_epochs >= cfg.patience
        stopping = "patience" if out_of_patience else "max_epochs" if epoch + 1 == cfg.epochs else None
        if on_epoch is not None and on_epoch(EpochReport(
            epoch=epoch + 1, metrics=metrics, is_best=is_best, checkpoint_dir=last_dir, best_dir=best_dir,
            stopping=stopping,
        )):
            stop_reason = "stopped by caller"
            break
        if out_of_patience:
            stop_reason = f"early stopping: no {cfg.monitor} gain for {cfg.patience} epochs"
            break
    if events is not None:
        events.close()
    epochs_run = len(history)
    summary = {"best_epoch": best_epoch, "epochs_run": epochs_run, "stop_reason": stop_reason, **best_metrics}
    write_metrics(out_dir, summary)
    log.info("done: %s; best epoch %d, %s %.4f -> %s", stop_reason, best_epoch, cfg.monitor,
             best_metrics.get(cfg.monitor, float("nan")), best_dir)
    return TrainResult(out_dir, best_epoch, best_metrics, epochs_run, stop_reason, history)


def _tensorboard(folder: str | None) -> Any:
    """A TensorBoard event writer (tensorboardX: no TensorFlow needed), or None."""
    if folder is None:
        return None
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(folder))


def _by_id(ds: Any, index: np.ndarray, margin: np.ndarray) -> dict[str, dict[str, float]]:
    labels = ds.binary_labels
    return {
        ds.ids[i]: {"label": int(labels[i]), "group": ds.groups[i], "logit": round(float(m), 6), "prob": round(float(p), 6)}
        for i, m, p in zip(index, margin, sigmoid(margin))
    }


def _resume(folder: Path, cfg: TrainConfig, data: PreparedData, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer, gen: torch.Generator) -> dict[str, Any]:
    check_resumable(read_meta(folder), cfg, data.fingerprint, folder)
    model.load_state_dict(load_weights(folder))
    state = load_train_state(folder)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    gen.set_state(state["gen_rng"])
    return state


def _gpu_memory(device: torch.device) -> dict[str, float]:
    """The most GPU memory this process has held so far (what packing trials per GPU must fit)."""
    if device.type != "cuda":
        return {}
    return {"gpu_memory_peak_mib": torch.cuda.max_memory_reserved(device) / 2**20}
