"""Pretrained EfficientNet-Lite0 against the same model from scratch, and sweeps with and without pretrained candidates.

Part A (direct, always): `trainers.train` twice per seed on the shared COVID-CT training
split, with one TrainConfig that differs only in `pretrained`: efficientnet_lite0,
--image-size (160), --epochs (10), batch 32, AdamW lr 1e-3, the default split (val 0.15,
holdout 0.15, split_seed 0: group-aware, so no patient or paper figure straddles two
splits), the same seed per pair (run one after the other, the first arm alternating
from seed to seed). Optimiser settings are identical by default:
`freeze_epochs` 0 and `backbone_lr_scale` 1.0 in both arms, so the only difference is
the initial weights. --freeze-epochs / --backbone-lr-scale change them for the
pretrained arm only (the scratch arm has nothing worth freezing). `patience` is off
(--patience to set it): both arms get the whole epoch budget, and each keeps its best
epoch by val AUC. The images are decoded once, before either arm is timed, and both
arms train on that same prepared data.

For each run: the best val AUC, the val accuracy (threshold 0.5) at that epoch, the
epoch, and the wall time of the `train()` call (model creation and weight loading,
training, evaluation, checkpoints). Then the best checkpoint is scored on the holdout
split from its stored predictions (`best/checkpoint.json`, predictions["holdout"]:
label and probability per sample id; AUC and accuracy at 0.5 with scikit-learn). The
best epoch was chosen on val, so val AUC is optimistic; the holdout was used by
neither arm and is the fairer number. --seeds 0 1 2 repeats each pair (mean +- sd).

Part B (--sweeps, long): the example sweep (configs/sweep_covid_ct.yaml) twice with one
wall-time budget each, shrunk as bench/searching/bench_search.py shrinks it (one image size,
--sweep-max-epochs, --sweep-budget, many samples): "with" samples `pretrained` from
[true, false] as the config does; "without" forces `pretrained: [false]` (the
`when: {pretrained: true}` parameters are then never sampled). For each: trials, best
val AUC, the best trial's holdout AUC and accuracy (from the checkpoint.json of its best
Tune checkpoint) and wall time. A model that may be sampled with pretrained: true must
have weights on this machine (resnet18 has none offline): the script stops before
starting if not; pass --sweep-models.

--smoke-test: generated images, 32 px, 2 epochs. Part A uses timm's tiny
test_efficientnet, which has no pretrained weights anywhere: the "pretrained" arm loads
a state dict saved from a freshly created 3-channel, 1000-class test_efficientnet
(random weights) through `pretrained_file`, so the whole loading path runs (name
matching, head dropped, first conv adapted to one channel). It checks the script, not
the benefit of pretraining. With --sweeps as well, Part B runs efficientnet_lite0 at 32
px with the real ImageNet weights from the pip package, 40 s per sweep.

    .venv/bin/python -m bench.searching.bench_pretrained                           # Part A, one seed (~6 min)
    .venv/bin/python -m bench.searching.bench_pretrained --seeds 0 1 2 --sweeps \
        --sweep-models efficientnet_lite0 tf_efficientnet_lite0          # A x 3 seeds, then B (~50 min)
    .venv/bin/python -m bench.searching.bench_pretrained --smoke-test              # seconds, generated data
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

import bench.searching.bench_search as bs
from bench.common import DATA_FROM_ROOT, ROOT
from trainers import TrainConfig, prepare_data, read_meta, train



# --- scoring a checkpoint --------------------------------------------------------------


def holdout_scores(checkpoint_dir: str | Path) -> tuple[float, float, int]:
    """AUC and accuracy at 0.5 of a checkpoint's stored holdout predictions, and their count."""
    preds = read_meta(checkpoint_dir)["predictions"]["holdout"]
    y = np.array([p["label"] for p in preds.values()])
    prob = np.array([p["prob"] for p in preds.values()])
    auc = float(roc_auc_score(y, prob)) if len(set(y.tolist())) == 2 else math.nan
    return auc, float(accuracy_score(y, prob >= 0.5)), len(y)


# --- Part A: pretrained against scratch -----------------------------------------------


@dataclass
class RunScore:
    arm: str
    seed: int
    best_epoch: int
    val_auc: float
    val_accuracy: float
    holdout_auc: float
    holdout_accuracy: float
    wall: float
    epochs_run: int
    source: str | None  # where the pretrained weights came from


def arm_config(args: argparse.Namespace, data: Path, *, pretrained: bool, seed: int,
               cache: Path | None, weights: Path | None) -> TrainConfig:
    return TrainConfig(
        data=str(data),
        model=args.model,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        pretrained=pretrained,
        # loop.py loads weights whenever pretrained_file is set, so only the pretrained arm gets it
        pretrained_file=str(weights) if pretrained and weights else None,
        freeze_epochs=args.freeze_epochs if pretrained else 0,
        backbone_lr_scale=args.backbone_lr_scale if pretrained else 1.0,
        val_fraction=args.val_fraction,
        holdout_fraction=args.holdout_fraction,
        split_seed=args.split_seed,
        seed=seed,
        device=args.device,
        num_threads=args.num_threads,
        cache_dir=str(cache) if cache else None,
        progress=False,
    )


def run_one(arm: str, cfg: TrainConfig, data: Any, out: Path) -> RunScore:
    print(f"--- {arm}, seed {cfg.seed}: {out}", flush=True)
    t0 = time.perf_counter()
    result = train(cfg, out, data=data)
    wall = time.perf_counter() - t0
    best = out / "best"
    h_auc, h_acc, _ = holdout_scores(best)
    m = result.best_metrics
    score = RunScore(arm, cfg.seed, result.best_epoch, m["val_auc"], m["val_accuracy"], h_auc, h_acc, wall,
                     result.epochs_run, read_meta(best).get("pretrained"))
    print(f"    best epoch {score.best_epoch}/{score.epochs_run}: val AUC {score.val_auc:.4f}, val acc "
          f"{score.val_accuracy:.4f}; holdout AUC {h_auc:.4f}, acc {h_acc:.4f}; {wall:.1f} s", flush=True)
    return score


def part_a(args: argparse.Namespace, data_dir: Path, out: Path, cache: Path | None,
           weights: Path | None) -> list[RunScore]:
    probe = arm_config(args, data_dir, pretrained=False, seed=args.seeds[0], cache=cache, weights=None)
    t0 = time.perf_counter()
    data = prepare_data(probe)  # decoded (or read from the cache) once, before any timing
    split = data.split
    print(f"data:    {data.dataset.root}: train {len(split.train)}, val {len(split.val)}, holdout "
          f"{len(split.holdout)} images at {args.image_size} px (prepared in {time.perf_counter() - t0:.1f} s)")
    print(f"part A:  {args.model}, {args.epochs} epochs, batch {args.batch_size}, adamw lr {args.lr:g}, patience "
          f"{args.patience}, pretrained arm: freeze_epochs {args.freeze_epochs}, backbone_lr_scale "
          f"{args.backbone_lr_scale:g}; seeds {args.seeds}; torch threads {args.num_threads or 'default'}", flush=True)
    scores = []
    for i, seed in enumerate(args.seeds):
        order = (("pretrained", True), ("scratch", False))
        for arm, pretrained in order if i % 2 == 0 else order[::-1]:  # alternated, so neither arm always goes first
            cfg = arm_config(args, data_dir, pretrained=pretrained, seed=seed, cache=cache, weights=weights)
            scores.append(run_one(arm, cfg, data, out / "direct" / f"seed{seed}" / arm))
    return scores


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}"


def print_part_a(scores: list[RunScore]) -> dict[str, dict[str, list[float]]]:
    print()
    print(f"{'arm':11} {'seed':>4} {'best epoch':>10} {'val AUC':>8} {'val acc':>8} {'holdout AUC':>11} "
          f"{'holdout acc':>11} {'wall s':>7}  weights")
    for s in scores:
        print(f"{s.arm:11} {s.seed:4d} {f'{s.best_epoch}/{s.epochs_run}':>10} {s.val_auc:8.4f} "
              f"{s.val_accuracy:8.4f} {s.holdout_auc:11.4f} {s.holdout_accuracy:11.4f} {s.wall:7.1f}  "
              f"{s.source or 'none (random init)'}")
    agg: dict[str, dict[str, list[float]]] = {}
    for s in scores:
        a = agg.setdefault(s.arm, {k: [] for k in ("val_auc", "val_accuracy", "holdout_auc", "holdout_accuracy",
                                                    "wall")})
        for k in a:
            a[k].append(getattr(s, k))
    if len(scores) > 2:
        print(f"\n{'arm':11} {'val AUC':>17} {'val acc':>17} {'holdout AUC':>17} {'holdout acc':>17} {'wall s':>8}"
              "   (mean +- sd over seeds)")
        for arm, a in agg.items():
            print(f"{arm:11} {mean_sd(a['val_auc']):>17} {mean_sd(a['val_accuracy']):>17} "
                  f"{mean_sd(a['holdout_auc']):>17} {mean_sd(a['holdout_accuracy']):>17} "
                  f"{statistics.mean(a['wall']):8.1f}")
    print("(val: the best epoch by val AUC, so optimistic; holdout: that checkpoint on data neither arm selected on;"
          " accuracy at threshold 0.5; wall: the whole train() call)")
    return agg


# --- Part B: sweeps with and without pretrained candidates ------------------------------


@dataclass
class SweepScore:
    sweep: str
    trials: int
    errors: int
    pretrained_trials: int
    best_val_auc: float
    best_trial: str | None
    best_pretrained: Any
    best_model: Any
    holdout_auc: float
    holdout_accuracy: float
    wall: float


def sweep_configs(args: argparse.Namespace, data: Path | None, cache: Path | None) -> dict[str, Any]:
    cfg = bs.load_sweep_config(ROOT / args.sweep_config)
    base = bs.shrink(
        cfg, image_size=args.sweep_image_size, max_epochs=args.sweep_max_epochs, budget=args.sweep_budget,
        num_samples=args.sweep_num_samples, max_concurrent=args.sweep_max_concurrent, cpus_per_trial=1.0,
        seed=args.sweep_seed, models=args.sweep_models, data=data, cache_dir=cache,
    )
    without = dataclasses.replace(base, space=bs.set_choice(base.space, "pretrained", [False]))
    return {"with_pretrained": base, "without_pretrained": without}


def part_b(args: argparse.Namespace, data: Path | None, out: Path, cache: Path | None) -> list[SweepScore]:
    sweeps = sweep_configs(args, data, cache)
    for name, cfg in sweeps.items():
        print(f"{name}: {bs.describe(cfg)}")
    bs.check_pretrained(sweeps["with_pretrained"])
    print(f"decoding the images into the cache before timing: {bs.decode_once(sweeps['with_pretrained']):.1f} s",
          flush=True)
    scores = []
    for name, cfg in sweeps.items():
        run = bs.run_arm(name, cfg, out / "sweeps" / name)
        table = run.table
        wall = bs.arm_end(run) - run.t_call
        scored = table[table["best_metric"].notna()] if len(table) else table
        if len(scored):
            best = scored.iloc[0]
            h_auc, h_acc, _ = holdout_scores(best["checkpoint"]) if best["checkpoint"] else (math.nan, math.nan, 0)
            best_trial, best_val = best["trial_id"], float(best["best_metric"])
            best_pre, best_model = best.get("config/pretrained"), best.get("config/model")
        else:
            h_auc = h_acc = best_val = math.nan
            best_trial = best_pre = best_model = None
        pre = int((table["config/pretrained"] == True).sum()) if "config/pretrained" in table else 0  # noqa: E712
        scores.append(SweepScore(name, len(table), int((table["status"] == "error").sum()) if len(table) else 0,
                                 pre, best_val, best_trial, best_pre, best_model, h_auc, h_acc, wall))
    return scores


def print_part_b(scores: list[SweepScore]) -> None:
    print()
    print(f"{'sweep':19} {'trials':>6} {'pretr.':>6} {'errors':>6} {'best val AUC':>12} {'holdout AUC':>11} "
          f"{'holdout acc':>11} {'wall s':>7}  best trial")
    for s in scores:
        print(f"{s.sweep:19} {s.trials:6d} {s.pretrained_trials:6d} {s.errors:6d} {s.best_val_auc:12.4f} "
              f"{s.holdout_auc:11.4f} {s.holdout_accuracy:11.4f} {s.wall:7.1f}  "
              f"{s.best_trial} ({s.best_model}, pretrained {s.best_pretrained})")
    print("(pretr.: trials that sampled pretrained: true; holdout: the best trial's best checkpoint; wall: launch call"
          " to the end of Tuner.fit, Ray start-up included)")


# --- the command line --------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA_FROM_ROOT, help=f"relative to the repository root (default {DATA_FROM_ROOT})")
    p.add_argument("--out", help="runs go to OUT/direct/seedN/ARM and OUT/sweeps/NAME, relative to the repository "
                   "root (default runs/bench_pretrained; with --smoke-test a temporary folder)")
    a = p.add_argument_group("part A")
    a.add_argument("--model", default="efficientnet_lite0")
    a.add_argument("--image-size", type=int, default=160)
    a.add_argument("--epochs", type=int, default=10)
    a.add_argument("--batch-size", type=int, default=32)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--patience", type=int, default=None, help="trainer early stopping (default off: every epoch runs)")
    a.add_argument("--freeze-epochs", type=int, default=0, help="pretrained arm only (default 0)")
    a.add_argument("--backbone-lr-scale", type=float, default=1.0, help="pretrained arm only (default 1.0)")
    a.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds, one pair each (default 0)")
    a.add_argument("--val-fraction", type=float, default=0.15)
    a.add_argument("--holdout-fraction", type=float, default=0.15)
    a.add_argument("--split-seed", type=int, default=0)
    a.add_argument("--device", default="auto")
    a.add_argument("--num-threads", type=int, default=None, help="torch threads (default: torch's choice)")
    a.add_argument("--pretrained-file", help="weights for the pretrained arm (default: the pip package)")
    b = p.add_argument_group("part B")
    b.add_argument("--sweeps", action="store_true", help="also run part B (2 x --sweep-budget seconds)")
    b.add_argument("--sweeps-only", action="store_true", help="run part B alone, without part A")
    b.add_argument("--sweep-config", default=bs.DEFAULT_CONFIG)
    b.add_argument("--sweep-image-size", type=int, default=96)
    b.add_argument("--sweep-max-epochs", type=int, default=8)
    b.add_argument("--sweep-budget", type=float, default=900, help="seconds per sweep (default 900)")
    b.add_argument("--sweep-num-samples", type=int, default=200)
    b.add_argument("--sweep-max-concurrent", type=int, default=2)
    b.add_argument("--sweep-seed", type=int, default=0)
    b.add_argument("--sweep-models", nargs="+", help="replace the sweep's model choice")
    p.add_argument("--smoke-test", action="store_true", help="generated data, tiny models, 32 px, 2 epochs")
    args = p.parse_args(argv)
    if args.smoke_test:
        args.model, args.image_size, args.epochs, args.batch_size = "test_efficientnet", 32, 2, 16
        args.sweep_image_size, args.sweep_max_epochs, args.sweep_budget = 32, 2, 40.0
        args.sweep_models = ["efficientnet_lite0"]
    return args


def fake_pretrained_file(model: str, folder: Path) -> Path:
    """A 3-channel, 1000-class state dict of a fresh timm model: the shape of ImageNet weights, not their value."""
    import timm
    import torch

    path = folder / f"fake_{model}_imagenet.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model(model, in_chans=3, num_classes=1000).state_dict(), path)
    return path


def save_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def run(args: argparse.Namespace, out: Path, data: Path, cache: Path | None, weights: Path | None,
        sweep_data: Path | None) -> None:
    for sub in ("direct", "sweeps"):
        if (out / sub).exists() and ((sub == "direct" and not args.sweeps_only) or (sub == "sweeps" and (args.sweeps or args.sweeps_only))):
            raise SystemExit(f"{out / sub} exists: remove it or pick another --out")
    bs.print_header("bench_pretrained: pretrained vs scratch, and sweeps with and without pretrained candidates")
    scores = [] if args.sweeps_only else part_a(args, data, out, cache, weights)
    sweep_scores = part_b(args, sweep_data, out, cache) if args.sweeps or args.sweeps_only else []

    print()
    bs.print_header("bench_pretrained summary")
    agg = print_part_a(scores) if scores else None
    save_csv(out / "direct.csv", [dataclasses.asdict(s) for s in scores])
    if sweep_scores:
        print_part_b(sweep_scores)
        save_csv(out / "sweeps.csv", [dataclasses.asdict(s) for s in sweep_scores])
    print(f"\nsaved {out / 'direct.csv'}" + (f" and {out / 'sweeps.csv'}" if sweep_scores else ""))

    if agg is None:
        print("\nbest sweep with vs without pretrained: " + " vs ".join(
            f"holdout AUC {x.holdout_auc:.3f} (val {x.best_val_auc:.3f}, {x.wall:.0f} s)" for x in sweep_scores))
        return
    p, s = agg["pretrained"], agg["scratch"]
    m = statistics.mean
    print(f"\n{args.model} {args.image_size} px {args.epochs} epochs, {len(args.seeds)} seed(s): pretrained vs scratch "
          f"holdout AUC {m(p['holdout_auc']):.3f} vs {m(s['holdout_auc']):.3f}, holdout acc "
          f"{m(p['holdout_accuracy']):.3f} vs {m(s['holdout_accuracy']):.3f}, val AUC {m(p['val_auc']):.3f} vs "
          f"{m(s['val_auc']):.3f}, wall {m(p['wall']):.0f} s vs {m(s['wall']):.0f} s"
          + ("" if not sweep_scores else
             "; best sweep with vs without pretrained: " + " vs ".join(
                 f"holdout AUC {x.holdout_auc:.3f} (val {x.best_val_auc:.3f}, {x.wall:.0f} s)" for x in sweep_scores)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.smoke_test:
        with tempfile.TemporaryDirectory(prefix="bench-pretrained-") as tmp:
            data, cache = bs.smoke_setup(Path(tmp))
            weights = fake_pretrained_file(args.model, Path(tmp))
            out = (ROOT / args.out).resolve() if args.out else Path(tmp) / "runs"
            run(args, out, data, cache, weights, data)
    else:
        data = (ROOT / args.data).resolve()
        weights = (ROOT / args.pretrained_file).resolve() if args.pretrained_file else None
        run(args, (ROOT / (args.out or "runs/bench_pretrained")).resolve(), data, None, weights, data)


if __name__ == "__main__":
    main()
