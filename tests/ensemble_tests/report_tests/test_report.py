"""report.html from synthetic holdout predictions and a tiny fake sweep folder: figures are real, non-blank PNGs."""
from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.special import expit, logit

from ensemble import (
    METRIC_NAMES, EnsembleError, ReportData, ReportSection, bootstrap_metrics, read_candidates,
    write_report,
)
from ensemble.report.page import FIGURE_IDS
from search.record import SweepFolder

SWEEP_FIGURES = ("fig-history", "fig-importance")
SPACE = [
    {"name": "lr", "kind": "loguniform", "values": [1e-4, 3e-3], "when": []},
    {"name": "optimizer", "kind": "choice", "values": ["adamw", "sgd"], "when": []},
    {"name": "momentum", "kind": "uniform", "values": [0.8, 0.95], "when": [["optimizer", ["sgd"]]]},
    {"name": "image_size", "kind": "choice", "values": [160, 224], "when": []},
]


class _Page(HTMLParser):
    """The <img> attributes, the ids of notes and sections, the <h2> titles, and the headline table's row headers."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, dict[str, str | None]] = {}
        self.notes: set[str] = set()
        self.sections: list[str] = []
        self.headings: list[str] = []
        self._heading = False
        self.headline_rows: list[str] = []
        self._table: str | None = None
        self._row_header = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images[a.get("id") or f"unnamed-{len(self.images)}"] = a
        elif tag == "p" and "note" in (a.get("class") or "").split():
            self.notes.add(a.get("id") or "")
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "th" and a.get("scope") == "row" and self._table == "headline":
            self._row_header = True
        elif tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "h2":
            self._heading = True
            self.headings.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "th":
            self._row_header = False
        elif tag == "h2":
            self._heading = False

    def handle_data(self, data: str) -> None:
        if self._row_header:
            self.headline_rows.append(data.strip())
        if self._heading:
            self.headings[-1] += data


def _fake_sweep(root: Path, n_trials: int = 8) -> Path:
    """results.parquet, lungsweep_sweep.json and trial_<id>/progress.csv as a small sweep would leave them."""
    rng = np.random.default_rng(1)
    root.mkdir()
    (root / "lungsweep_sweep.json").write_text(json.dumps({"metric": "val_auc", "mode": "max", "space": SPACE}))
    rows, start = [], 1_700_000_000
    for i in range(n_trials):
        tid = f"t{i:02d}"
        optimizer = "sgd" if i % 2 else "adamw"
        lr = float(np.exp(rng.uniform(np.log(1e-4), np.log(3e-3))))
        status = "error" if i == n_trials - 1 else "stopped" if i % 3 == 2 else "completed"
        epochs = {"error": 1, "stopped": 2, "completed": 6}[status]
        auc = np.clip(0.6 + 0.05 * np.log10(lr / 1e-4) + 0.05 * (optimizer == "sgd")
                      + np.cumsum(rng.uniform(0, 0.03, epochs)), 0, 1)
        folder = root / f"trial_{tid}"
        folder.mkdir()
        if status != "error":
            seconds = np.cumsum(rng.uniform(20, 40, epochs))
            pd.DataFrame({
                "training_iteration": np.arange(1, epochs + 1), "val_auc": auc, "val_loss": 1 - auc,
                "time_total_s": seconds, "timestamp": (start + 45 * i + seconds).astype(int),
            }).to_csv(folder / "progress.csv", index=False)
        rows.append({
            "trial_id": tid, "status": status, "epochs": epochs,
            "best_epoch": 0 if status == "error" else int(np.argmax(auc)) + 1,
            "best_metric": float("nan") if status == "error" else float(auc.max()),
            "checkpoint": None if status == "error" else str(folder / "checkpoint_000000"),
            "wall_seconds": 30.0 * epochs, "node_id": "node0",
            "config/image_size": [160, 224][i % 2], "config/lr": lr,
            "config/momentum": float(rng.uniform(0.8, 0.95)) if optimizer == "sgd" else float("nan"),
            "config/optimizer": optimizer,
        })
    table = pd.DataFrame(rows).sort_values("best_metric", ascending=False, na_position="last")
    table.insert(0, "rank", range(1, len(table) + 1))
    table.to_parquet(root / "results.parquet", index=False)
    return root


def _read_sweep(sweep_dir: Path | None) -> SweepFolder | str | None:
    """The sweep as picking members reads it, or why it cannot (the note the page shows)."""
    if sweep_dir is None:
        return None
    try:
        return read_candidates(sweep_dir)
    except EnsembleError as e:
        return f"{e}."


def _report_data(sweep_dir: Path | None, n_groups: int = 60) -> ReportData:
    """Three members of different skill on grouped holdout samples; the ensemble is their mean, recalibrated."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(n_groups), 2)
    y = rng.permutation(np.arange(n_groups) % 2)[groups]
    patient = rng.normal(0, 1.0, n_groups)[groups, None]  # shared by all members: limits what averaging gains
    margins = (2 * y - 1)[:, None] * np.array([1.2, 0.9, 0.5]) + patient + rng.normal(0, 1, (len(y), 3))
    member_probs = expit(margins)
    uncal = member_probs.mean(axis=1)
    cal = expit(1.6 * logit(uncal))
    threshold = 0.5
    decisions = (cal >= threshold).astype(np.int64)
    ids = ["t00", "t01", "t03"]

    def scored(p: np.ndarray) -> dict:
        return bootstrap_metrics(y, p, groups, threshold, n_boot=100, seed=0)

    return ReportData(
        title="test ensemble <mean> & co",
        method="greedy",
        calibration="temperature",
        member_ids=ids,
        member_configs=[
            {"model": "resnet18", "pretrained": True, "image_size": 160, "lr": 3.2e-4, "optimizer": "adamw"},
            {"model": "efficientnet_lite0", "pretrained": True, "image_size": 224, "lr": 1.1e-3,
             "optimizer": "sgd", "momentum": 0.9},
            {"model": "resnet18", "pretrained": False, "image_size": 160, "lr": 2.5e-4, "optimizer": "adamw"},
        ],
        member_weights=[0.5, 0.25, 0.25],
        y=y,
        member_probs=member_probs,
        ensemble_uncalibrated=uncal,
        ensemble_calibrated=cal,
        decisions=decisions,
        threshold=threshold,
        metrics={"ensemble": scored(cal), "ensemble_uncalibrated": scored(uncal),
                 "members": {tid: scored(member_probs[:, j]) for j, tid in enumerate(ids)}},
        class_names=("CT_NonCOVID", "CT_COVID"),
        provenance={"sweep": str(sweep_dir), "numbers": "synthetic holdout; 100 group-bootstrap resamples",
                    "holdout": {"images": len(y), "groups": n_groups}},
        sweep=_read_sweep(sweep_dir),
    )


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _check_png(src: str | None) -> None:
    prefix = "data:image/png;base64,"
    assert src is not None and src.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):])))
    image.load()
    assert image.format == "PNG"
    assert image.width > 200 and image.height > 150
    assert np.asarray(image.convert("L"), dtype=np.float64).std() > 0


def test_report_has_every_figure_and_metric(tmp_path: Path) -> None:
    out = write_report(tmp_path / "report.html", _report_data(_fake_sweep(tmp_path / "sweep")))
    page = _parse(out)
    assert set(page.images) == set(FIGURE_IDS)
    for fig_id, attrs in page.images.items():
        assert attrs.get("alt"), fig_id
        _check_png(attrs.get("src"))
    assert page.notes == set()
    assert page.headline_rows == [*METRIC_NAMES, "threshold", "n"]
    text = out.read_text(encoding="utf-8")
    assert "test ensemble &lt;mean&gt; &amp; co" in text  # escaped, once in <title> and once in <h1>
    assert "synthetic holdout; 100 group-bootstrap resamples" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_report_without_sweep_shows_notes(tmp_path: Path) -> None:
    out = write_report(tmp_path / "report.html", _report_data(None))
    page = _parse(out)
    assert set(page.images) == set(FIGURE_IDS) - set(SWEEP_FIGURES)
    assert page.notes == {"note-history", "note-importance"}
    for attrs in page.images.values():
        _check_png(attrs.get("src"))


def test_too_few_trials_gives_an_importance_note(tmp_path: Path) -> None:
    # 3 trials, of which the last is an error: 2 finished, below the 3 importance needs
    out = write_report(tmp_path / "report.html", _report_data(_fake_sweep(tmp_path / "sweep", n_trials=3)))
    page = _parse(out)
    assert "fig-history" in page.images and "fig-importance" not in page.images
    assert page.notes == {"note-importance"}


def test_mismatched_member_configs_are_refused(tmp_path: Path) -> None:
    data = _report_data(None)
    bad = ReportData(**{**data.__dict__, "member_configs": data.member_configs[:2]})
    with pytest.raises(ValueError, match="2 member configs for 3 members"):
        write_report(tmp_path / "report.html", bad)


def test_a_sweep_folder_without_results_gives_notes_that_name_the_missing_step(tmp_path: Path) -> None:
    sweep = _fake_sweep(tmp_path / "sweep")
    (sweep / "results.parquet").unlink()
    out = write_report(tmp_path / "report.html", _report_data(sweep))
    page = _parse(out)
    assert page.notes == {"note-history", "note-importance"}
    assert "run `lungsweep results" in out.read_text(encoding="utf-8")


def test_an_unknown_space_kind_gives_an_importance_note(tmp_path: Path) -> None:
    sweep = _fake_sweep(tmp_path / "sweep")
    space = [*SPACE[:3], {"name": "image_size", "kind": "normal", "values": [160, 224], "when": []}]
    (sweep / "lungsweep_sweep.json").write_text(json.dumps({"metric": "val_auc", "mode": "max", "space": space}))
    out = write_report(tmp_path / "report.html", _report_data(sweep))
    page = _parse(out)
    assert "fig-history" in page.images and page.notes == {"note-importance"}
    assert "unknown kind &#x27;normal&#x27;" in out.read_text(encoding="utf-8")


def test_extra_sections_come_before_the_provenance_in_order(tmp_path: Path) -> None:
    audit = ReportSection(title="Data audit <v1>", html="<p>12 near-duplicate pairs <b>removed</b></p>", id="data-audit")
    folds = ReportSection(title="K-fold", html="<p>5 folds over patients</p>", id="kfold")
    data = _report_data(None)
    out = write_report(tmp_path / "report.html", ReportData(**{**data.__dict__, "sections": (audit, folds)}))
    page = _parse(out)
    assert page.sections == ["data-audit", "kfold"]
    assert page.headings[-3:] == ["Data audit <v1>", "K-fold", "Provenance"]
    text = out.read_text(encoding="utf-8")
    assert "<h2>Data audit &lt;v1&gt;</h2>" in text  # the title is escaped, the html is not
    assert "<p>12 near-duplicate pairs <b>removed</b></p>" in text
    assert set(page.images) == set(FIGURE_IDS) - set(SWEEP_FIGURES)  # the rest of the page is unchanged


@pytest.mark.parametrize(
    "sections, match",
    [
        ((ReportSection("Audit", "<p></p>", "data audit"),), r"section 'Audit' has id 'data audit'; use a letter"),
        ((ReportSection("Audit", "<p></p>", "members"),), r"id 'members', which the page already uses"),
        ((ReportSection("A", "<p></p>", "x"), ReportSection("B", "<p></p>", "x")), r"section 'B' has id 'x', which"),
        (("<p>raw</p>",), r"report sections must be ReportSection\(title, html, id\), got '<p>raw</p>'"),
    ],
)
def test_bad_sections_are_refused(tmp_path: Path, sections: tuple, match: str) -> None:
    data = _report_data(None)
    with pytest.raises(EnsembleError, match=match):
        write_report(tmp_path / "report.html", ReportData(**{**data.__dict__, "sections": sections}))
    assert not (tmp_path / "report.html").exists()
