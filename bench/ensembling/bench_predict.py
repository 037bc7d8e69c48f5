"""Prediction throughput: the exported ONNX ensemble of k members vs the same members in torch eager, vs k x one member.

Builds a mean ensemble of a sweep's top k trials (mean: no member is dropped),
exports it and each member alone to ONNX, then times, at batch 32 on this
machine's cores:

  inference   images/s of pre-decoded uint8 batches: ONNX ensemble, torch eager
              members (the in-process EnsembleModel), and every member's own
              ONNX export (their summed cost is "k x one member");
  end to end  `lungsweep predict`'s streaming path (decode in threads while the
              previous batch runs) from image files to probabilities;
  decoding    trainers.decode_image alone, one thread: its share of the serial time.

With --sizes, it also times k untrained copies of the members' architecture at
other image sizes (speed does not depend on the weights), to show how the decoding
share falls as the members grow.

Goal: the ensemble costs at most k x one member + 10%, and decoding is
under 10% of the time.

With --export-networks (no sweep needed), it exports mean ensembles of that many untrained
networks (--model at --size: speed does not depend on the weights) as `lungsweep export`
writes them, and prints per row the export seconds, the artifact's MB and its images/s
(goal, issue 29: 30 networks export in at most 60 s on 2 cores).

    .venv/bin/python -m bench.ensembling.bench_predict runs/bench_search/tpe_asha --members 5
    .venv/bin/python -m bench.ensembling.bench_predict --export-networks 1,5,15,30
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ensemble import (
    EnsembleGraph, EnsembleModel, EnsemblePipeline, EnsembleSettings, ExportedModel, GraphMember, build_ensemble,
    export_model, find_images, is_ensemble_folder, is_model_folder, pick_members, predict, write_onnx,
)
from trainers import Preprocessing, create_model, decode_image, decode_image_sizes

BATCH = 32


def timed(fns: dict[str, object], repeats: int) -> dict[str, float]:
    """Best-of-`repeats` seconds of each fn(), after a warm-up call each; the sides alternate per round."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def batches(arrays: dict[int, np.ndarray]):
    n = len(next(iter(arrays.values())))
    return [{s: a[i : i + BATCH] for s, a in arrays.items()} for i in range(0, n, BATCH)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", nargs="?", help="a sweep RUN_DIR with results.parquet")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--images", type=int, default=256, help="image files timed (from the sweep's data)")
    parser.add_argument("--out", default="runs/bench_predict")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="", help="e.g. 160,224: also time untrained k-member ensembles at these sizes")
    parser.add_argument("--export-networks", default="", help="e.g. 1,5,15,30: export untrained ensembles of that "
                                                              "many networks (no sweep needed)")
    parser.add_argument("--model", default="efficientnet_lite0", help="--export-networks: the architecture")
    parser.add_argument("--size", type=int, default=160, help="--export-networks: the image size")
    args = parser.parse_args()
    if args.export_networks:
        export_rows([int(k) for k in args.export_networks.split(",")], args.model, args.size, Path(args.out),
                    args.repeats)
    if args.sweep is None:
        return
    logging.basicConfig(level=logging.WARNING)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    print(f"command: {' '.join(sys.argv)}\ndate:    {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"machine: {cores} CPU cores, torch {torch.__version__}, batch {BATCH}")

    out = Path(args.out)
    members = pick_members(args.sweep, top=args.members)
    k = len(members)
    ens_dir, model_dir = out / f"ens_mean_k{k}", out / f"model_mean_k{k}"
    if not is_ensemble_folder(ens_dir):
        build_ensemble(args.sweep, ens_dir, EnsembleSettings(method="mean", members=k, n_boot=200))
    if not is_model_folder(model_dir):
        export_model(ens_dir, model_dir)
    singles = []
    for m in members:
        single_dir = out / f"model_{m.trial_id}"
        if not is_model_folder(single_dir):
            export_model(args.sweep, single_dir, trial=m.trial_id, n_boot=100)
        singles.append(ExportedModel.load(single_dir))

    onnx_ens = ExportedModel.load(model_dir)
    eager = EnsembleModel.load(ens_dir)
    data = Path(members[0].config["data"])
    files = find_images([data])[: args.images]
    sizes = onnx_ens.image_sizes
    print(f"ensemble: mean of {k} members {[m.trial_id for m in members]}, models "
          f"{sorted({m.config['model'] for m in members})}, image sizes {sizes}; {len(files)} images from {data}")

    start = time.perf_counter()
    arrays = {s: np.stack([decode_image(f, s) for f in files]) for s in sizes}
    decode_s = time.perf_counter() - start
    n = len(files)

    def run_onnx(model: ExportedModel) -> None:
        for b in batches(arrays):
            model.predict_proba(b)

    def run_eager() -> None:
        cpu = torch.device("cpu")
        for b in batches(arrays):
            eager.predict_proba(b)

    class Null:
        def write(self, _: str) -> None: ...
        def flush(self) -> None: ...

    sides = {"ensemble": lambda: run_onnx(onnx_ens), "eager": run_eager,
             "e2e": lambda: predict(onnx_ens, files, stream=Null(), batch_size=BATCH, progress=False)}
    sides.update({f"single{i}": (lambda m=m: run_onnx(m)) for i, m in enumerate(singles)})
    best = timed(sides, args.repeats)
    ens_s, eager_s, e2e_s = best["ensemble"], best["eager"], best["e2e"]
    k_one_s = sum(best[f"single{i}"] for i in range(k))

    print()
    print(f"{'path':<44} {'images/s':>9} {'ms/image':>9}")
    rows = [
        (f"ONNX ensemble, k={k}, inference", ens_s),
        (f"torch eager members, k={k}, inference", eager_s),
        ("k x one member (sum of each member's ONNX)", k_one_s),
        ("one member (mean of the k)", k_one_s / k),
        ("ONNX ensemble end to end (predict, files)", e2e_s),
        ("decode_image alone (1 thread)", decode_s),
    ]
    for name, seconds in rows:
        print(f"{name:<44} {n / seconds:9.1f} {1000 * seconds / n:9.2f}")
    ratio = ens_s / k_one_s
    share = decode_s / (decode_s + ens_s)
    print()
    print(f"ensemble / (k x one member): {ratio:.3f}  (goal <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    print(f"ONNX ensemble vs torch eager: {eager_s / ens_s:.2f}x faster")
    print(f"decoding share of serial decode + inference: {share:.1%}  (goal < 10%: {'met' if share < 0.10 else 'NOT met'})")
    print(f"end to end vs inference alone: {e2e_s / ens_s:.2f}x the inference time (decoding overlaps inference)")

    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        model_name = members[0].config["model"]
        print(f"\nby image size: mean of {k} untrained {model_name}, ONNX, batch {BATCH}")
        print(f"{'size':>5} {'decode ms':>10} {'ensemble ms':>12} {'one ms':>8} {'ens/(k x one)':>14} {'decode share':>13}")
    for size in sizes:
        start = time.perf_counter()
        arrays = {size: np.stack([decode_image_sizes(f, (size,))[size] for f in files])}
        decode_s = time.perf_counter() - start
        row = []
        for n_members in (k, 1):
            path = out / f"untrained_{model_name}_s{size}_k{n_members}.onnx"
            if not path.is_file():
                graph = untrained_graph(model_name, size, n_members, members[0].meta["preprocessing"])
                write_onnx(graph, path, arrays)
            row.append(path)
        best = timed({p.name: (lambda p=p: run_session(p, arrays)) for p in row}, args.repeats)
        ens_s, one_s = (best[p.name] for p in row)
        print(f"{size:>5} {1000 * decode_s / n:10.2f} {1000 * ens_s / n:12.2f} {1000 * one_s / n:8.2f} "
              f"{ens_s / (k * one_s):14.3f} {decode_s / (decode_s + ens_s):13.1%}")


def export_rows(networks: list[int], model_name: str, size: int, out: Path, repeats: int) -> None:
    """Per row: write_onnx's seconds (the exporter and onnx.checker, as `lungsweep export` runs them), the file's
    MB, and onnxruntime's images/s at batch 32 on this machine."""
    out.mkdir(parents=True, exist_ok=True)
    arrays = {size: np.random.default_rng(0).integers(0, 256, (BATCH, size, size), dtype=np.uint8)}
    print(f"\nexport: mean of k untrained {model_name} at {size} px, ONNX (torch {torch.__version__})")
    print(f"{'networks':>8} {'export s':>9} {'MB':>7} {'images/s':>9}")
    for k in networks:
        graph = untrained_graph(model_name, size, k, {"mean": 0.5, "std": 0.25})
        path = out / f"export_{model_name}_s{size}_k{k}.onnx"
        start = time.perf_counter()
        write_onnx(graph, path, arrays)
        seconds = time.perf_counter() - start
        megabytes = sum(p.stat().st_size for p in out.glob(path.name + "*")) / 2**20  # with external data, if any
        best = timed({"run": lambda: run_session(path, arrays)}, repeats)["run"]
        print(f"{k:>8} {seconds:9.1f} {megabytes:7.1f} {BATCH / best:9.1f}", flush=True)


def untrained_graph(model_name: str, size: int, k: int, prep: dict) -> EnsembleGraph:
    pipe = EnsemblePipeline.single_member().to_dict()
    pipe["n_members"] = k
    pipe["combiner"]["state"]["n_members_"] = k
    prep = Preprocessing(image_size=size, mean=float(prep["mean"]), std=float(prep["std"]))
    members = [GraphMember(f"m{i}", [create_model(model_name).eval()], prep) for i in range(k)]
    return EnsembleGraph(members, EnsemblePipeline.from_dict(pipe), tta=False).eval()


_sessions: dict[Path, object] = {}


def run_session(path: Path, arrays: dict[int, np.ndarray]) -> None:
    import onnxruntime as ort

    if path not in _sessions:
        _sessions[path] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    session = _sessions[path]
    name = session.get_inputs()[0].name
    for b in batches(arrays):
        session.run(None, {name: next(iter(b.values()))[:, None]})


if __name__ == "__main__":
    main()
