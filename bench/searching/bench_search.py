"""Optuna TPE + ASHA against random search without early stopping, at equal wall time.

Two arms, built from one base sweep config (default configs/sweep_covid_ct.yaml) and
run one after the other, each with the same wall-time budget (Tune's `time_budget_s`),
into its own RUN_DIR under --out:

* tpe_asha:    the config as it is: Optuna's TPESampler (random for the first
               `startup_trials` finished trials, then TPE) and ASHA early stopping.
* random_fifo: random search without early stopping, with the same code path:
               - `startup_trials = num_samples`: TPESampler draws every parameter of
                 its startup trials with its own RandomSampler
                 (`sample_independent` -> `RandomSampler` while fewer than
                 n_startup_trials trials have finished), so no trial is ever proposed
                 by TPE: uniform random search over the same space, conditionals
                 included;
               - `asha.grace_period = asha.max_epochs`: ASHA then has one rung, at
                 max_t, and Tune's ASHAScheduler answers STOP only when a trial
                 reaches max_t (where it ends anyway), so no trial is cut early.
               Both arms share the seed: the random arm's first proposals are the
               ones the TPE arm starts with (common random numbers).

Everything else is the same in both arms, the trainer's own `patience` included (it
is a property of the training recipe, not of the search), so the only differences
are TPE-vs-random and ASHA-vs-none. For 2 CPU cores the base config is shrunk: one
image size (--image-size), --max-epochs epochs per trial (ASHA's max_t), many samples
(--num-samples, so the budget is what stops an arm), --max-concurrent trials of
--cpus-per-trial CPUs. The images are decoded into the cache before either arm starts,
so neither arm pays for it and arm order does not matter.

Timing. Each arm's clock starts when `search.launch` is called, which starts a local
Ray (and shuts it down when it returns). The figures:

* time to target: wall time from the `launch` call to the first epoch report whose
  val_auc reaches --target (best-so-far curve over all trials' reports). A report's
  time is the trial's start + its `time_total_s` (a lower bound: Tune's clock stops
  between reports), kept within the second of Tune's `timestamp` (whole unix seconds).
  Also printed from the first trial's start (Tune's `run_metadata.start_time`, set
  when the trial's actor is up), which leaves out Ray's start-up and the pre-flight
  data check: "ray start" is that difference.
* in-trial overhead ("Tune overhead per trial", the < 5% goal): per trial, Tune's own
  trial time (the last report's `time_total_s`, the sum of the trainable's step
  times) minus the sum of the trainer's `epoch_seconds`. epoch_seconds runs from the
  start of an epoch's training pass to the end of its val + holdout evaluation and
  metrics; everything else inside the trial counts as overhead:
    - setup, once per trial (in the first report): building the TrainConfig,
      `prepare_data` (dataset listing and sha256 fingerprint, memory-mapping the
      cached images, the split), copying the training images, creating the model,
      the optimizer;
    - per epoch: the trainer's own checkpoint writing (last/ every epoch, best/ when
      it improves; they are written AFTER epoch_seconds is taken), history.csv, and
      `tune.report`: Tune copying the checkpoint folder into the trial folder
      (persist), its artifact sync, and handing the result to Tune's driver.
  So it is an upper bound on Tune's own cost; the trainer's checkpoint writing is in
  it. It does NOT include the actor's start-up nor the time a trial waits for the
  driver between reports (Tune's clock does not run then): the sweep figure does.
  "ckpt copy" prints the time to copy one trial checkpoint folder (median of 3), about
  what one Tune persist (and one trainer `last/` write) costs per epoch.
* sweep overhead: max_concurrent x (arm end - first trial start) - sum over trials of
  their time_total_s, as a share of the first term: slots left idle (searcher
  proposals, actor start-up and teardown, driver round trips between reports, result
  and checkpoint bookkeeping) plus the unfinished epochs of trials cut by the budget.
  Arm end = when the results table was written (just after Tuner.fit returned).
  Ray's start-up is printed apart ("ray start").

Trial outcomes: completed (ran max_epochs), patience (trainer early stopping), asha
(stopped by ASHA at a rung) and budget (still running when the budget ran out).
Tune does not record why it stopped a trial; a stopped trial counts as cut by the
budget when its last report is less than 1.5 of its own report intervals (+3 s)
before the arm's end, or its last epoch is not an ASHA rung, else as ASHA-stopped.
(A trial that ASHA stopped within one epoch of the end is thus counted as budget.)

    # the measurement, ~32 min on 2 CPU cores (resnet18 has no ImageNet weights offline,
    # and the example space may sample it with pretrained: true; the script stops if so)
    .venv/bin/python -m bench.searching.bench_search --models efficientnet_lite0 tf_efficientnet_lite0
    .venv/bin/python -m bench.searching.bench_search --smoke-test    # ~2 min, generated data
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import ROOT
from search import AshaConfig, ParamSpec, SweepConfig, launch, load_sweep_config
from tests.tests_support import make_dataset
from trainers import create_model, load_pretrained, prepare_data
from trainers.errors import WeightsError

DEFAULT_CONFIG = "configs/sweep_covid_ct.yaml"  # relative to the repository root
ARMS = ("tpe_asha", "random_fifo")


# --- building the two arms -------------------------------------------------------------


def set_choice(space: tuple[ParamSpec, ...], name: str, values: list[Any]) -> tuple[ParamSpec, ...]:
    """The space with `name` made a choice of `values`, in place (so `when` order holds), or appended."""
    values_t = tuple(values)
    out, found = [], False
    for spec in space:
        if spec.name == name:
            spec, found = dataclasses.replace(spec, kind="choice", values=values_t), True
        out.append(spec)
    if not found:
        out.append(ParamSpec(name=name, kind="choice", values=values_t))
    return tuple(out)


def shrink(
    cfg: SweepConfig,
    *,
    image_size: int,
    max_epochs: int,
    budget: float,
    num_samples: int,
    max_concurrent: int,
    cpus_per_trial: float,
    seed: int,
    models: list[str] | None = None,
    data: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> SweepConfig:
    """The base sweep made to fit 2 CPU cores and a wall-time budget.

    The data path is made absolute: Tune runs each trial in its own folder, so a
    relative path would be read from there.
    """
    train = dict(cfg.train)
    if data is not None:
        train["data"] = str(data)
    if train.get("data") is not None:
        train["data"] = str((ROOT / train["data"]).resolve())  # an absolute path stays as it is
    if cache_dir is not None:
        train["cache_dir"] = str(cache_dir)
    space = set_choice(cfg.space, "image_size", [image_size])
    if models:
        space = set_choice(space, "model", models)
    return dataclasses.replace(
        cfg,
        train=train,
        space=space,
        num_samples=num_samples,
        max_concurrent=max_concurrent,
        cpus_per_trial=cpus_per_trial,
        time_budget_s=budget,
        seed=seed,
        storage=None,  # RUN_DIR is --out/ARM
        study_storage=None,  # a fresh in-memory Optuna study per arm
        asha=AshaConfig(
            max_epochs=max_epochs,
            grace_period=min(cfg.asha.grace_period, max_epochs),
            reduction_factor=cfg.asha.reduction_factor,
        ),
    )


def random_arm(cfg: SweepConfig) -> SweepConfig:
    """Random search without early stopping (see the module docstring for why this is exact)."""
    return dataclasses.replace(
        cfg,
        startup_trials=max(cfg.startup_trials, cfg.num_samples),
        asha=dataclasses.replace(cfg.asha, grace_period=cfg.asha.max_epochs),
    )


def arms_from(base: SweepConfig) -> dict[str, SweepConfig]:
    return {"tpe_asha": base, "random_fifo": random_arm(base)}


def describe(cfg: SweepConfig) -> str:
    space = ", ".join(
        f"{s.name}={list(s.values)}" if s.kind == "choice" else f"{s.name}~{s.kind}{list(s.values)}" for s in cfg.space
    )
    return (
        f"startup_trials {cfg.startup_trials}, ASHA max_t {cfg.asha.max_epochs} grace {cfg.asha.grace_period} "
        f"rf {cfg.asha.reduction_factor}, num_samples {cfg.num_samples}, {cfg.max_concurrent} concurrent x "
        f"{cfg.cpus_per_trial:g} CPU, budget {cfg.time_budget_s:g} s, seed {cfg.seed}, "
        f"trainer patience {cfg.train.get('patience', 'default')}\n    space: {space}"
    )


def check_pretrained(cfg: SweepConfig) -> None:
    """Fail fast if a model that may be sampled with pretrained: true has no weights on this machine.

    Such trials would fail at their first step and be retried `max_failures` times,
    spending the arm's budget on actor start-ups instead of training.
    """
    specs = {s.name: s for s in cfg.space}
    may_be_pretrained = True in (specs["pretrained"].values if "pretrained" in specs else (cfg.train.get("pretrained"),))
    if not may_be_pretrained:
        return
    models = specs["model"].values if "model" in specs else (cfg.base_train_config().model,)
    # `pretrained` may be sampled only for some models (when: {model: [...]})
    for key, allowed in specs["pretrained"].when if "pretrained" in specs else ():
        if key == "model":
            models = tuple(m for m in models if m in allowed)
    missing = []
    for name in models:
        try:
            load_pretrained(create_model(name), name, weights_file=cfg.train.get("pretrained_file"))
        except WeightsError:
            missing.append(name)
    if missing:
        keep = [m for m in models if m not in missing]
        raise SystemExit(
            f"no pretrained weights on this machine for {', '.join(missing)}, but the space may sample it with "
            f"pretrained: true (those trials would fail and be retried). Pass --models {' '.join(keep) or 'NAME'}, "
            "or make the weights available (see README, pretrained weights)"
        )


def decode_once(cfg: SweepConfig) -> float:
    """Decode every image size of the sweep into the cache before the arms are timed."""
    t0 = time.perf_counter()
    base = cfg.base_train_config()
    for size in cfg.image_sizes():
        prepare_data(base.replace(image_size=size))
    return time.perf_counter() - t0


# --- running an arm and reading what Tune stored ----------------------------------------


@dataclass
class ArmRun:
    name: str
    cfg: SweepConfig
    run_dir: Path
    t_call: float  # unix time when launch() was called
    t_return: float  # unix time when it returned
    table: Any  # launch's results table (pandas)


def run_arm(name: str, cfg: SweepConfig, run_dir: Path) -> ArmRun:
    if run_dir.exists():
        # launch() would resume the sweep found there, which would make the timing meaningless
        raise SystemExit(f"{run_dir} exists: remove it or pick another --out (an old sweep would be resumed)")
    print(f"\n=== arm {name}: {run_dir}", flush=True)
    t_call = time.time()
    table = launch(cfg, run_dir)
    t_return = time.time()
    print(f"=== arm {name} done in {t_return - t_call:.0f} s", flush=True)
    return ArmRun(name, cfg, run_dir, t_call, t_return, table)


@dataclass
class TrialRecord:
    trial_id: str
    status: str  # from the results table: completed, early-stopped, stopped, error, ...
    start_time: float | None  # unix time the trial's actor was up (Tune's run_metadata)
    rows: list[dict[str, float]]  # one per epoch report: training_iteration, val_auc, timestamp, ...
    outcome: str = ""  # completed / patience / asha / budget / error / other

    @property
    def time_total(self) -> float:
        return self.rows[-1]["time_total_s"] if self.rows else 0.0

    def epoch_seconds(self) -> float:
        return sum(r["epoch_seconds"] for r in self.rows)

    def excess(self) -> list[float]:
        """Per report: Tune's step time minus the trainer's epoch_seconds (see the module docstring)."""
        out, prev = [], 0.0
        for r in self.rows:
            out.append(r["time_total_s"] - prev - r["epoch_seconds"])
            prev = r["time_total_s"]
        return out

    def report_times(self) -> list[float]:
        """Unix time of each report: Tune's whole-second `timestamp`, refined by the trial's start + time_total_s."""
        out = []
        for r in self.rows:
            ts = r["timestamp"]
            out.append(ts + 0.5 if self.start_time is None else min(max(self.start_time + r["time_total_s"], ts), ts + 1))
        return out


KEEP = ("training_iteration", "val_auc", "val_accuracy", "timestamp", "time_total_s", "epoch_seconds",
        "train_seconds")


def read_trials(run: ArmRun) -> list[TrialRecord]:
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(run.run_dir))
    frames = analysis.trial_dataframes
    status = dict(zip(run.table["trial_id"], run.table["status"])) if len(run.table) else {}
    records = []
    for trial in analysis.trials:
        df = frames.get(trial.trial_id)
        rows: list[dict[str, float]] = []
        if df is not None and len(df) and "epoch_seconds" in df:
            # a retried trial may report an epoch twice: keep the last report of each
            df = df.drop_duplicates("training_iteration", keep="last").sort_values("training_iteration")
            rows = [{k: float(row[k]) for k in KEEP if k in df} for _, row in df.iterrows()]
        start = getattr(trial.run_metadata, "start_time", None)
        records.append(TrialRecord(trial.trial_id, status.get(trial.trial_id, trial.status.lower()), start, rows))
    return records


def arm_end(run: ArmRun) -> float:
    """When Tuner.fit returned: launch writes results.csv right after it (then shuts Ray down)."""
    results = run.run_dir / "results.csv"
    return results.stat().st_mtime if results.is_file() else run.t_return


def classify(records: list[TrialRecord], cfg: SweepConfig, end: float) -> None:
    a = cfg.asha
    rungs, k = set(), 0
    while a.grace_period * a.reduction_factor ** k < a.max_epochs:
        rungs.add(a.grace_period * a.reduction_factor ** k)
        k += 1
    for r in records:
        if r.status == "completed":
            r.outcome = "completed"
        elif r.status == "early-stopped":
            r.outcome = "patience"
        elif r.status == "error":
            r.outcome = "error"
        elif r.status == "stopped":
            if not r.rows:
                r.outcome = "budget"
                continue
            times = r.report_times()
            starts = [r.start_time or times[0] - r.rows[0]["time_total_s"]] + times[:-1]
            interval = statistics.median(t - s for s, t in zip(starts, times))
            last_epoch = int(r.rows[-1]["training_iteration"])
            near_end = end - times[-1] < 1.5 * interval + 3.0
            r.outcome = "budget" if near_end or last_epoch not in rungs else "asha"
        else:
            r.outcome = "other"


# --- the figures -----------------------------------------------------------------------


@dataclass
class ArmStats:
    arm: str
    trials: int
    outcomes: dict[str, int]
    best_val_auc: float
    best_trial: str | None
    time_to_target: float | None  # from the launch call
    time_to_target_trials: float | None  # from the first trial's start
    ray_start: float  # launch call -> first trial start
    wall: float  # launch call -> arm end
    window: float  # first trial start -> arm end
    trial_seconds: float  # sum of time_total_s
    epoch_seconds: float  # sum of the trainer's epoch_seconds
    overhead_per_trial: float
    overhead_pct: float
    setup_per_trial: float
    excess_per_report: float
    sweep_overhead_pct: float
    sweep_overhead_per_trial: float
    curve: list[tuple[float, float]] = field(default_factory=list)  # (s since launch call, best val_auc so far)

    @property
    def stopped_early(self) -> int:
        return self.outcomes.get("asha", 0) + self.outcomes.get("patience", 0)

    def row(self) -> dict[str, Any]:
        return {
            "arm": self.arm, "trials": self.trials, **{f"n_{k}": self.outcomes.get(k, 0) for k in
                                                        ("completed", "patience", "asha", "budget", "error")},
            "stopped_early": self.stopped_early, "best_val_auc": self.best_val_auc, "best_trial": self.best_trial,
            "time_to_target_s": self.time_to_target, "time_to_target_from_first_trial_s": self.time_to_target_trials,
            "ray_start_s": self.ray_start, "wall_s": self.wall, "trial_seconds": self.trial_seconds,
            "epoch_seconds": self.epoch_seconds, "overhead_s_per_trial": self.overhead_per_trial,
            "overhead_pct": self.overhead_pct, "setup_s_per_trial": self.setup_per_trial,
            "excess_s_per_report": self.excess_per_report, "sweep_overhead_pct": self.sweep_overhead_pct,
            "sweep_overhead_s_per_trial": self.sweep_overhead_per_trial,
        }


def analyse(run: ArmRun, records: list[TrialRecord], target: float) -> ArmStats:
    end = arm_end(run)
    classify(records, run.cfg, end)
    reported = [r for r in records if r.rows]
    starts = [r.start_time for r in records if r.start_time]
    first_start = min(starts) if starts else run.t_call

    reports = sorted(
        (t, row["val_auc"], r.trial_id)
        for r in reported for t, row in zip(r.report_times(), r.rows)
        if not math.isnan(row.get("val_auc", math.nan))
    )
    curve, best, best_trial, hit = [], -math.inf, None, None
    for t, auc, trial_id in reports:
        if auc > best:
            best, best_trial = auc, trial_id
            curve.append((t - run.t_call, auc))
        if hit is None and best >= target:
            hit = t
    trial_seconds = sum(r.time_total for r in reported)
    epoch_seconds = sum(r.epoch_seconds() for r in reported)
    n = max(1, len(reported))
    later = [e for r in reported for e in r.excess()[1:]]
    per_report = statistics.median(later) if later else 0.0
    setup = statistics.mean(r.excess()[0] - per_report for r in reported) if reported else 0.0
    conc = run.cfg.max_concurrent or 1
    window = end - first_start
    idle = conc * window - trial_seconds
    counts: dict[str, int] = {}
    for r in records:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    return ArmStats(
        arm=run.name,
        trials=len(records),
        outcomes=counts,
        best_val_auc=best if reports else math.nan,
        best_trial=best_trial,
        time_to_target=None if hit is None else hit - run.t_call,
        time_to_target_trials=None if hit is None else hit - first_start,
        ray_start=first_start - run.t_call,
        wall=end - run.t_call,
        window=window,
        trial_seconds=trial_seconds,
        epoch_seconds=epoch_seconds,
        overhead_per_trial=(trial_seconds - epoch_seconds) / n,
        overhead_pct=100 * (trial_seconds - epoch_seconds) / trial_seconds if trial_seconds else math.nan,
        setup_per_trial=setup,
        excess_per_report=per_report,
        sweep_overhead_pct=100 * idle / (conc * window) if window > 0 else math.nan,
        sweep_overhead_per_trial=idle / max(1, len(records)),
        curve=curve,
    )


def checkpoint_copy_seconds(run_dir: Path) -> float | None:
    """Median time of 3 copies of one trial checkpoint folder (what Tune's persist does each epoch)."""
    folders = sorted(run_dir.glob("trial_*/checkpoint_*"))
    if not folders:
        return None
    src, times = folders[0], []
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        for i in range(3):
            t0 = time.perf_counter()
            shutil.copytree(src, Path(tmp) / str(i))
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- reporting -------------------------------------------------------------------------


def fmt_s(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.0f} s"


def versions() -> str:
    import optuna
    import ray
    import timm
    import torch

    return (f"python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
            f"ray {ray.__version__}, optuna {optuna.__version__}")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_header(title: str) -> None:
    print(title)
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"date:    {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"host:    {versions()}")
    print(f"machine: {os.cpu_count()} CPUs ({cpu_name()}), {platform.platform()}")


def print_summary(stats: list[ArmStats], target: float) -> None:
    print()
    head = (f"{'arm':12} {'trials':>6} {'done':>5} {'asha':>5} {'pat.':>5} {'budg.':>5} {'err':>4} "
            f"{'best val_auc':>12} {'to target':>12} {'(1st trial)':>12} {'overhead s/trial':>17} "
            f"{'overhead %':>10} {'sweep idle %':>12} {'ray start':>9} {'wall':>7}")
    print(head)
    for s in stats:
        o = s.outcomes
        print(f"{s.arm:12} {s.trials:6d} {o.get('completed', 0):5d} {o.get('asha', 0):5d} {o.get('patience', 0):5d} "
              f"{o.get('budget', 0):5d} {o.get('error', 0):4d} {s.best_val_auc:12.4f} "
              f"{fmt_s(s.time_to_target):>12} {fmt_s(s.time_to_target_trials):>12} "
              f"{s.overhead_per_trial:17.2f} {s.overhead_pct:9.1f}% {s.sweep_overhead_pct:11.1f}% "
              f"{s.ray_start:8.0f}s {s.wall:6.0f}s")
    print(f"(target val_auc >= {target}; 'to target' from the launch call, '(1st trial)' from the first trial's start;")
    print(" trials stopped early = asha + pat.(ience); budg. = cut by the time budget; overhead = in-trial, see --help)")
    for s in stats:
        print(f"{s.arm}: trial time {s.trial_seconds:.0f} s, of which trainer epochs {s.epoch_seconds:.0f} s; "
              f"in-trial overhead = setup {s.setup_per_trial:.2f} s/trial + {s.excess_per_report:.2f} s/epoch report; "
              f"sweep idle {s.sweep_overhead_per_trial:.1f} s/trial over the {s.window:.0f} s trial window; "
              f"best trial {s.best_trial}")


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, v in curve if v >= target), None)


def print_targets(stats: list[ArmStats], targets: list[float]) -> None:
    """Time to other targets from the same anytime curves (from the launch call), in case one is never reached."""
    print(f"\ntime to val AUC >= {'':4}" + "".join(f"{t:>12.3g}" for t in targets))
    for s in stats:
        print(f"{s.arm:22}" + "".join(f"{fmt_s(time_to(s.curve, t)):>12}" for t in targets))
    byarm = {s.arm: s for s in stats}
    if set(byarm) == set(ARMS):
        cells = []
        for t in targets:
            a, b = time_to(byarm["tpe_asha"].curve, t), time_to(byarm["random_fifo"].curve, t)
            cells.append("-" if a is None or b is None else f"{a / b:.2f}")
        print(f"{'ratio tpe_asha/random':22}" + "".join(f"{c:>12}" for c in cells))


def verdict(stats: dict[str, ArmStats], target: float) -> str:
    tpe, rnd = stats["tpe_asha"], stats["random_fifo"]
    if tpe.time_to_target is None:
        ratio = f"time-to-target ratio tpe_asha/random: n/a (tpe_asha did not reach val_auc {target})"
    elif rnd.time_to_target is None:
        ratio = (f"time-to-target ratio tpe_asha/random < {tpe.time_to_target / rnd.wall:.2f} "
                 f"(random did not reach val_auc {target} in {rnd.wall:.0f} s; goal <= 0.33)")
    else:
        ratio = (f"time-to-target ratio tpe_asha/random = {tpe.time_to_target / rnd.time_to_target:.2f} (goal <= 0.33; "
                 f"{tpe.time_to_target_trials / max(rnd.time_to_target_trials, 1e-9):.2f} timed from each arm's "
                 "first trial, without Ray's start-up)")
    over = ", ".join(f"{s.arm} {s.overhead_pct:.1f}%" for s in (tpe, rnd))
    idle = ", ".join(f"{s.arm} {s.sweep_overhead_pct:.1f}%" for s in (tpe, rnd))
    return f"{ratio}; Tune overhead {over} of trial time (goal < 5%); sweep slots idle {idle}"


def save_outputs(out: Path, stats: list[ArmStats], target: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = [s.row() for s in stats]
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out / "anytime_curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "seconds_since_launch", "best_val_auc"])
        for s in stats:
            w.writerows((s.arm, round(t, 1), round(v, 6)) for t, v in s.curve)
    print(f"\nsaved {out / 'summary.csv'} and {out / 'anytime_curves.csv'}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not importable here: no plot; anytime_curves.csv holds the curves)")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in stats:
        if s.curve:
            xs = [t for t, _ in s.curve] + [s.wall]
            ys = [v for _, v in s.curve] + [s.curve[-1][1]]
            ax.step(xs, ys, where="post", label=s.arm)
    ax.axhline(target, color="grey", linestyle=":", label=f"target {target}")
    ax.set_xlabel("wall time since launch (s)")
    ax.set_ylabel("best val AUC so far")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "anytime_curves.png", dpi=120)
    print(f"saved {out / 'anytime_curves.png'}")


# --- the command line --------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"base sweep config (default {DEFAULT_CONFIG})")
    p.add_argument("--data", help="dataset folder (default: the config's train.data), relative to the repository root")
    p.add_argument("--out", help="each arm runs in OUT/ARM, relative to the repository root "
                   "(default runs/bench_search; with --smoke-test a temporary folder)")
    p.add_argument("--image-size", type=int, default=96, help="the one image size of every trial (default 96)")
    p.add_argument("--max-epochs", type=int, default=8, help="epochs per trial, ASHA's max_t (default 8)")
    p.add_argument("--budget", type=float, default=900, help="wall-time budget per arm, seconds (default 900)")
    p.add_argument("--target", type=float, default=0.85, help="val AUC target for time-to-target (default 0.85)")
    p.add_argument("--num-samples", type=int, default=200, help="trial cap; large, so the budget stops each arm")
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="searcher seed, the same in both arms (default 0)")
    p.add_argument("--models", nargs="+", help="replace the config's model choice, e.g. efficientnet_lite0 resnet18")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="run only some arms (default both)")
    p.add_argument("--smoke-test", action="store_true",
                   help="generated data, test_resnet at 32 px, 3 epochs, 40 s per arm, target 0.9: checks the script")
    args = p.parse_args(argv)
    if args.smoke_test:
        args.image_size, args.max_epochs, args.budget, args.target = 32, 3, 40.0, 0.9
        args.models = ["test_resnet"]
    return args


def smoke_setup(tmp: Path) -> tuple[Path, Path]:
    """The test suite's generated images and a private decoded-image cache (the user's is never touched)."""
    cache = tmp / "cache"
    os.environ["LUNGSWEEP_CACHE"] = str(cache)  # inherited by the local Ray's workers
    return make_dataset(tmp / "data" / "train", groups_per_class=20), cache


def build(args: argparse.Namespace, data: Path | None, cache: Path | None) -> SweepConfig:
    cfg = load_sweep_config(ROOT / args.config)
    if args.smoke_test:  # the tiny model has no pretrained weights anywhere
        cfg = dataclasses.replace(cfg, space=set_choice(cfg.space, "pretrained", [False]))
    return shrink(
        cfg, image_size=args.image_size, max_epochs=args.max_epochs, budget=args.budget,
        num_samples=args.num_samples, max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
        seed=args.seed, models=args.models, data=data if data is not None else args.data, cache_dir=cache,
    )


def run(args: argparse.Namespace, out: Path, data: Path | None, cache: Path | None) -> dict[str, ArmStats]:
    base = build(args, data, cache)
    arms = {k: v for k, v in arms_from(base).items() if k in args.arms}
    print_header("bench_search: Optuna TPE + ASHA vs random search without early stopping, equal wall time")
    print(f"data:    {base.train.get('data')} at {args.image_size} px")
    for name, cfg in arms.items():
        print(f"{name}: {describe(cfg)}")
    check_pretrained(base)
    print(f"decoding the images into the cache before timing: {decode_once(base):.1f} s", flush=True)

    stats: dict[str, ArmStats] = {}
    copy_s = None
    for name, cfg in arms.items():
        result = run_arm(name, cfg, out / name)
        stats[name] = analyse(result, read_trials(result), args.target)
        copy_s = copy_s if copy_s is not None else checkpoint_copy_seconds(result.run_dir)

    print()
    print_header("bench_search summary")
    print_summary(list(stats.values()), args.target)
    print_targets(list(stats.values()), sorted({0.75, 0.8, 0.85, 0.9, args.target}))
    if copy_s is not None:
        print(f"ckpt copy: {copy_s:.3f} s per trial checkpoint folder (median of 3 copies; about one Tune persist)")
    save_outputs(out, list(stats.values()), args.target)
    if set(stats) == set(ARMS):
        print()
        print(verdict(stats, args.target))
    return stats


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.smoke_test:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
            data, cache = smoke_setup(Path(tmp))
            out = (ROOT / args.out).resolve() if args.out else Path(tmp) / "runs"
            run(args, out, data, cache)
    else:
        run(args, (ROOT / (args.out or "runs/bench_search")).resolve(), None, None)


if __name__ == "__main__":
    main()
