"""The quick-start model's holdout AUC with the old and the new grouping of the COVID-CT files.

old: a group is the file stem before '%' (86 crops of one paper figure are 86 "patients"),
     no near-duplicate merging
new: the default: the name up to its page/slice indices, near-duplicates merged

Each arm trains `configs/quickstart.yaml` (same seed and split_seed) and is scored on its
own holdout; a leak-free split usually reads lower, and that is the point: the old number
was inflated by crops of one figure on both sides of the split.

    .venv/bin/python -m bench.training.bench_grouping --out runs/bench_grouping     # ~8 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import yaml

from bench.common import LUNGSWEEP, ROOT
from ensemble import bootstrap_metrics, metric_text
from trainers.checkpoint import read_meta
from trainers.inference import sigmoid
from trainers.run_folder import BEST

# the stem before '%': the grouping used before trailing slice and crop indices were read
OLD_GROUP_REGEX = r"^(.*?)(?:%\d+)?\.(?:png|jpg|jpeg)$"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_grouping")
    args = parser.parse_args()
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    arms = {"old (stem before %, no merging)": {"group_regex": OLD_GROUP_REGEX, "merge_duplicates": False},
            "new (page/slice indices dropped, near-duplicates merged)": {}}
    print(f"{'grouping':58s} {'holdout groups':>14s} {'holdout AUC [95% CI]':>26s} {'val AUC':>8s}")
    for n, (name, changes) in enumerate(arms.items()):
        config = out / f"arm{n}.yaml"
        config.write_text(yaml.safe_dump({**base, "data": str((ROOT / base["data"]).resolve()), **changes}))
        run = out / f"arm{n}"
        with (out / f"arm{n}.log").open("w") as log:
            done = subprocess.run([*LUNGSWEEP, "train", "--config", str(config), "--out",
                                   str(run), "--resume"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            sys.exit(f"arm {name} failed; see {out / f'arm{n}.log'}")
        meta = read_meta(run / BEST)
        m = holdout_metrics(meta)
        print(f"{name:58s} {m['groups']:14d} {metric_text(m, 'auc'):>24s} {meta['metrics']['val_auc']:8.3f}")


def holdout_metrics(meta: dict) -> dict:
    holdout = meta["predictions"]["holdout"]
    ids = sorted(holdout)
    y = np.array([holdout[i]["label"] for i in ids])
    groups = np.array([holdout[i]["group"] for i in ids])
    m = bootstrap_metrics(y, sigmoid(np.array([holdout[i]["logit"] for i in ids])), groups, 0.5, n_boot=1000)
    m["groups"] = len(set(groups))
    return m


if __name__ == "__main__":
    main()
