"""`lungsweep explain` and the report's "Where the models look" section.

A planted shortcut: generated "lungs" whose label is ONLY a bright square, in the top-left corner or in the
centre; brightness, contrast and noise vary from image to image identically in both classes, so that the
square must be found where it is (not read off the image's global statistics). A tiny network trained on
it (real training) reaches a near-perfect AUC; explain must put most of the positive class's map on the
corner square, or inside the content box for the centre one. Each check is also run with the maps
replaced by uniform noise, where it must fail: the maps, not the thresholds, find the shortcut.
"""
from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from tests_support import lungsweep, tiny_config

from ensemble import (
    EnsembleCam, ExplainError, content_box, explain, explain_samples, explain_section, find_images,
    load_explainable, mass_shares, samples_of,
)
from ensemble.explaining.border import BORDER_MARGIN, content_rectangle
from ensemble.explaining.cam import cell_centres
from ensemble.report.explain_section import SECTION_ID, choose_images

SIZE = 128  # px: test_efficientnet_gn's final feature map (stride 32) is then 4 cells across (cam.MIN_CAM_CELLS)
CELL = 32  # px: one cell of that map; a map cannot place anything finer
CORNER, CENTRE = 16, 20  # sides of the planted squares, px; the corner one is 12.5% of the side
MODEL = "test_efficientnet_gn"
CLASSES = ("CT_COVID", "CT_NonCOVID")


def planted(root: Path, where: str, *, per_class: int = 40, seed: int = 0) -> Path:
    """Two dark lungs in a grey body with noise, identically distributed in both classes; the positive class
    (CT_COVID) alone has a white square in the top-left corner or in the centre."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = np.full((SIZE, SIZE), rng.uniform(100, 200))  # brightness and contrast vary from scan to scan
            dark = rng.uniform(50, 100)
            for cx in (0.32, 0.68):
                cx, cy = cx + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02)
                rx, ry = 0.14 + rng.normal(0, 0.01), 0.28 + rng.normal(0, 0.02)
                img -= dark * (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1)
            img += rng.normal(0, rng.uniform(6, 20), img.shape)
            if c == 0:
                side = CORNER if where == "corner" else CENTRE
                at = 0 if where == "corner" else SIZE // 2 - side // 2
                img[at:at + side, at:at + side] = 255
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name / f"{name.lower()}{i}x.png")
    return root


def _config(data: Path, **overrides):
    settings = dict(model=MODEL, image_size=SIZE, epochs=6, lr=5e-3, batch_size=16, aug_strength=0.0,
                    label_smoothing=0.0, monitor="val_loss", merge_duplicates=False, holdout_fraction=0.3)
    return tiny_config(data, **{**settings, **overrides})


@pytest.fixture(scope="module")
def corner(tmp_path_factory, session_cache) -> tuple[Path, Path]:
    """(data, checkpoint) of a model trained on the corner-square dataset."""
    from trainers import train

    root = tmp_path_factory.mktemp("corner")
    data = planted(root / "data", "corner")
    train(_config(data), root / "run")
    return data, root / "run" / "best"


@pytest.fixture(scope="module")
def centre(tmp_path_factory, session_cache) -> tuple[Path, Path]:
    """(data, checkpoint) of a model trained on the centre-square dataset."""
    from trainers import train

    root = tmp_path_factory.mktemp("centre")
    data = planted(root / "data", "centre", seed=1)
    train(_config(data), root / "run")
    return data, root / "run" / "best"


@pytest.fixture(scope="module")
def centre_bag(centre, tmp_path_factory, session_cache) -> tuple[Path, Path]:
    """(data, bag) of a 2-fold bag on the centre-square dataset."""
    from trainers import train_bag

    data, _ = centre
    bag = tmp_path_factory.mktemp("centre-bag") / "bag"
    train_bag(_config(data, cv_folds=2), bag)
    return data, bag


@pytest.fixture(scope="module")
def corner_ens(corner, tmp_path_factory, session_cache) -> Path:
    """The corner model as a one-member ensemble (a sweep of one trial), with its report."""
    from ensemble import EnsembleSettings, build_ensemble

    _, checkpoint = corner
    sweep = tmp_path_factory.mktemp("corner-sweep")
    shutil.copytree(checkpoint, sweep / "trial_a" / "best")
    pd.DataFrame([{"rank": 1, "trial_id": "a", "status": "completed", "best_metric": 1.0,
                   "checkpoint": str(sweep / "trial_a" / "best")}]).to_parquet(sweep / "results.parquet")
    out = tmp_path_factory.mktemp("corner-ens") / "ens"
    build_ensemble(sweep, out, EnsembleSettings(method="greedy", calibration="temperature", members=1,
                                                 n_splits=3, n_boot=50))
    return out


def _uniform_noise(self, images, classes):
    """EnsembleCam.maps replaced: uniform noise of unit mass, whatever the image."""
    rng = np.random.default_rng(0)
    maps = rng.random((len(classes), self.display_size, self.display_size))
    return maps / maps.sum(axis=(1, 2), keepdims=True)


def _explained(source: Path, data: Path, maps: str, monkeypatch):
    if maps == "uniform-noise":
        monkeypatch.setattr(EnsembleCam, "maps", _uniform_noise)
    model = load_explainable(source, device="cpu")
    found = list(explain_samples(model, samples_of(find_images([data]), model)))
    auc = roc_auc_score([e.sample.label == model.positive for e in found], [e.probability for e in found])
    return found, auc


@pytest.mark.parametrize("maps", ["grad-cam", "uniform-noise"])
def test_a_corner_shortcut_is_found_on_the_corner(corner, maps, monkeypatch):
    data, checkpoint = corner
    found, auc = _explained(checkpoint, data, maps, monkeypatch)
    assert auc > 0.98  # the square alone decides the label, and the model learned it
    tp = [e for e in found if e.outcome == "TP"]
    assert len(tp) >= 0.9 * 40
    on_square = np.mean([e.cam[:CORNER + CELL, :CORNER + CELL].sum() for e in tp])  # the square and a cell: 14%
    border = np.mean([e.shares.border_mass for e in tp])
    uniform = tp[0].shares.border_area  # 36%: what a map spread evenly puts on the border band
    found_it = on_square > 0.5 and border > 1.2 * uniform
    assert found_it == (maps == "grad-cam"), (maps, on_square, border)


@pytest.mark.parametrize("maps", ["grad-cam", "uniform-noise"])
def test_a_centre_shortcut_is_found_inside_the_content_box(centre, maps, monkeypatch):
    data, checkpoint = centre
    found, auc = _explained(checkpoint, data, maps, monkeypatch)
    assert auc > 0.98
    tp = [e for e in found if e.outcome == "TP"]
    content = np.mean([e.shares.content_mass for e in tp])
    border = np.mean([e.shares.border_mass for e in tp])
    found_it = content > 0.7 and border < 0.3  # a map spread evenly puts 64% inside, 36% on the border
    assert found_it == (maps == "grad-cam"), (maps, content, border)


# --- the measure ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width, height", [(90, 40), (40, 90), (50, 50), (61, 37)])
def test_the_content_rectangle_is_where_decode_image_puts_the_image(tmp_path, width, height):
    from trainers import decode_image

    path = tmp_path / "white.png"
    Image.fromarray(np.full((height, width), 255, np.uint8)).save(path)
    for size in (32, 64, 160):
        ys, xs = np.nonzero(decode_image(path, size) > 0)
        assert content_rectangle(width, height, size) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_a_uniform_map_puts_the_band_s_area_on_the_border():
    shares = mass_shares(np.full((100, 100), 1e-4), 200, 100)  # a wide image: padding above and below
    # the real image spans rows 25..75; the content box is 80% of its width and height
    assert shares.border_area == pytest.approx(1 - 0.8 * 0.8 * 0.5, abs=0.02)
    assert shares.border_mass == pytest.approx(shares.border_area, abs=0.02)
    assert shares.padding_mass == pytest.approx(0.5, abs=0.02)
    assert shares.content_mass + shares.border_mass == pytest.approx(1)
    assert content_box(200, 100, 100) == pytest.approx((10, 30, 90, 70))
    assert BORDER_MARGIN == 0.10
    assert np.isnan(mass_shares(np.zeros((8, 8)), 8, 8).border_mass)  # an empty map says nothing


@pytest.mark.parametrize("model_name, first, step", [
    ("test_resnet", 0.5, 32),  # 3x3 stride-2 convolutions padded by 1: cell i centred at 32i + 0.5
    ("test_convnext", 16.0, 32),  # a 4x4 patchify stem, then 2x2 downsampling: centred in its block
])
def test_cells_are_placed_where_their_receptive_field_is_centred(model_name, first, step):
    import timm
    import torch

    from trainers.inference import Preprocessing

    model = timm.create_model(model_name, in_chans=1, num_classes=2).eval()
    ys, xs = cell_centres(model, Preprocessing(SIZE, 0.5, 0.5), device=torch.device("cpu"))
    np.testing.assert_allclose(ys, first + step * np.arange(len(ys)))
    np.testing.assert_allclose(xs, ys)


def test_members_are_weighed_by_the_combiner_and_drawn_at_the_largest_size():
    import timm
    import torch

    from ensemble import LoadedMember
    from trainers.inference import Preprocessing

    def member(name: str, size: int) -> LoadedMember:
        torch.manual_seed(size)
        return LoadedMember(name, [timm.create_model(MODEL, in_chans=1, num_classes=2).eval()],
                            Preprocessing(size, 0.5, 0.5))

    small, large = member("small", 32), member("large", 48)
    images = {s: np.random.default_rng(s).integers(0, 256, (3, s, s), dtype=np.uint8) for s in (32, 48)}
    classes = np.array([1, 0, 1])
    cpu = torch.device("cpu")
    both = EnsembleCam([small, large], [0.25, -0.75], tta=False, device=cpu)  # a stacker's negative weight counts
    assert both.display_size == 48 and [w for _, w in both.members] == [0.25, 0.75]
    alone = {m.trial_id: EnsembleCam([m], None, tta=False, device=cpu, display_size=48).maps(images, classes)
             for m in (small, large)}
    mixed = both.maps(images, classes)
    assert mixed.shape == (3, 48, 48) and mixed.sum(axis=(1, 2)) == pytest.approx(1)
    np.testing.assert_allclose(mixed, 0.25 * alone["small"] + 0.75 * alone["large"], atol=1e-6)
    only_large = EnsembleCam([small, large], [0.0, 1.0], tta=False, device=cpu)  # greedy left small out
    assert [m.trial_id for m, _ in only_large.members] == ["large"]
    mirrored = EnsembleCam([large], None, tta=True, device=cpu).maps(images, classes)
    flipped = {s: np.ascontiguousarray(a[:, :, ::-1]) for s, a in images.items()}
    np.testing.assert_allclose(mirrored, EnsembleCam([large], None, tta=True, device=cpu).maps(flipped, classes)
                               [:, :, ::-1], atol=1e-6)  # with TTA, a mirror image's map is the mirrored map


def test_the_report_shows_the_most_confident_of_each_outcome():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    p = np.array([.9, .8, .7, .2, .1, .3, .6, .95, .55, .05])
    shown, chosen = choose_images(y, p, np.full(10, 0.5), per_outcome=2, limit=9)
    assert shown == {"TP": [0, 1], "FP": [7, 6], "FN": [3], "TN": [9, 4]}
    assert chosen[:7] == [0, 1, 7, 6, 3, 9, 4] and len(chosen) == 9 and len(set(chosen)) == 9


# --- the command line, the report, the errors ---------------------------------------------------------------


def _some_images(data: Path, tmp_path: Path) -> Path:
    """Three images of each class, and one broken file, under class folders."""
    folder = tmp_path / "images"
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for path in sorted((data / name).glob("*.png"))[:3]:
            shutil.copy(path, folder / name / path.name)
    (folder / "CT_COVID" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


@pytest.mark.parametrize("kind", ["ensemble", "checkpoint", "bag"])
def test_explain_writes_overlays_rows_and_summaries(kind, corner, corner_ens, centre_bag, tmp_path):
    data, source = {"ensemble": (corner[0], corner_ens), "checkpoint": corner, "bag": centre_bag}[kind]
    images, out = _some_images(data, tmp_path), tmp_path / "out"
    done = lungsweep("explain", str(source), str(images), "--out", str(out))
    assert done.returncode == 1, done.stderr[-3000:]  # the broken file is listed; the others are explained
    assert "1 image(s) could not be read" in done.stderr and "broken.png" in done.stderr
    assert "explained 6 image(s)" in done.stdout and "outcome" in done.stdout
    rows = list(csv.DictReader((out / "explanations.csv").open()))
    assert len(rows) == 7
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.png") and bad[0]["probability"] == ""
    for row in (r for r in rows if not r["error"]):
        assert row["label"] in CLASSES and row["outcome"] in ("TP", "FP", "FN", "TN")
        assert float(row["content_mass"]) + float(row["border_mass"]) == pytest.approx(1, abs=1e-3)
        with Image.open(out / row["overlay"]) as overlay:
            assert overlay.size == (256, 256) and overlay.mode == "RGB"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["by_class"]) == set(CLASSES) and summary["explained"] == 6
    assert summary["skipped"][0]["image"].endswith("broken.png") and summary["border_margin"] == BORDER_MARGIN
    assert set(summary["by_outcome"]) <= {"TP", "FP", "FN", "TN"}
    table = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["by"] for r in table} == {"all", "class", "outcome"}


def test_the_explanations_are_the_model_s_own_probabilities(corner_ens, corner, tmp_path):
    from ensemble import EnsembleModel
    from trainers import decode_image

    model = EnsembleModel.load(corner_ens, device="cpu")
    images = _some_images(corner[0], tmp_path)
    result = explain(model, samples_of(find_images([images]), model), tmp_path / "out", progress=False)
    rows = [r for r in csv.DictReader((tmp_path / "out" / "explanations.csv").open()) if not r["error"]]
    size = model.image_sizes[0]
    expected = model.predict_proba({size: np.stack([decode_image(r["path"], size) for r in rows])})
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected, atol=1e-6)
    assert result.explained == 6 and len(result.bad) == 1


def test_an_exported_model_is_refused_naming_its_ensemble(corner_ens, tmp_path):
    from ensemble import export_model

    export_model(corner_ens, tmp_path / "model")
    done = lungsweep("explain", str(tmp_path / "model"), str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "exported model (MODEL_DIR)" in done.stderr and str(corner_ens.resolve()) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_nothing_to_explain_is_a_named_error(corner, tmp_path):
    _, checkpoint = corner
    done = lungsweep("explain", str(checkpoint), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "nothing to explain" in done.stderr
    (tmp_path / "empty").mkdir()
    done = lungsweep("explain", str(checkpoint), str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "no image files" in done.stderr
    with pytest.raises(ExplainError, match="nothing to explain"):
        explain(load_explainable(checkpoint, device="cpu"), [], tmp_path / "out")


class _Section(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: dict[str, dict] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "img":
            self.images[a.get("id", "")] = a


def test_the_report_shows_where_the_models_look(corner_ens):
    page = _Section()
    page.feed((corner_ens / "report.html").read_text(encoding="utf-8"))
    assert SECTION_ID in page.ids and "explain-by-class" in page.ids and "explain-by-outcome" in page.ids
    for outcome in ("tp", "fp", "fn", "tn"):  # a figure, or a note that the holdout has none of them
        assert f"fig-explain-{outcome}" in page.ids or f"note-explain-{outcome}" in page.ids
    assert "fig-explain-tp" in page.ids and "fig-explain-tn" in page.ids
    for name in ("fig-explain-tp", "fig-explain-tn"):
        assert page.images[name]["src"].startswith("data:image/png;base64,") and page.images[name]["alt"]
    assert "note-explain" not in page.ids


def test_the_section_says_so_when_the_training_data_is_gone(corner_ens):
    from ensemble import EnsemblePipeline, EnsembleSettings, Member, StoredPredictions

    member = Member("a", corner_ens / "members" / "a", {"config": {"data": "/no/such/folder"}}, 1, 1.0)
    preds = StoredPredictions(ids=["x.png", "y.png"], y=np.array([1, 0]), groups=np.array(["x", "y"]),
                              margins=np.zeros((2, 1)))
    section = explain_section([member], preds, np.array([0.9, 0.1]), np.full(2, 0.5),
                              EnsemblePipeline.single_member(), EnsembleSettings())
    assert section.id == SECTION_ID and 'id="note-explain"' in section.html
    assert "/no/such/folder is not there any more" in section.html
