"""Groups that hold: perceptual hashes, duplicate merging, images labelled twice, the shortcut check, the audit."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from tests_support import lungsweep, SHARED_DATA, make_dataset, tiny_config

from trainers import ConfigError, DataError, TrainConfig, decode_image, discover, prepare_data
from trainers.audit.report import audit_config, audit_summary
from trainers.data.duplicates import merged_groups
from trainers.data.phash import DEFAULT_MAX_DISTANCE, hamming_matrix, near_pairs, nearest_distances, phash
from trainers.audit.shortcut import shortcut_auc


def _scan(seed: int, h: int = 90, w: int = 120) -> np.ndarray:
    """A smooth grey picture: a dark field with a few soft bright blobs, like a CT slice at low resolution."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), 40.0)
    for _ in range(5):
        cy, cx, r = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w, rng.uniform(0.08, 0.2) * h
        img += rng.uniform(60, 160) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(img, 0, 255).astype(np.uint8)


def _hash(path: Path) -> int:
    return phash(decode_image(path, 64)[None])[0]


def _distance(a: Path, b: Path) -> int:
    return int(hamming_matrix(np.array([_hash(a), _hash(b)], dtype=np.uint64))[0, 1])


def test_phash_finds_a_resized_or_brightened_copy_and_not_an_unrelated_image(tmp_path):
    original = Image.fromarray(_scan(0))
    original.save(tmp_path / "a.png")
    original.resize((72, 54), Image.Resampling.LANCZOS).convert("RGB").save(tmp_path / "small.jpg", quality=90)
    ImageEnhance.Brightness(original).enhance(1.1).save(tmp_path / "bright.png")
    Image.fromarray(_scan(1)).save(tmp_path / "other.png")
    assert _distance(tmp_path / "a.png", tmp_path / "small.jpg") <= DEFAULT_MAX_DISTANCE
    assert _distance(tmp_path / "a.png", tmp_path / "bright.png") <= DEFAULT_MAX_DISTANCE
    assert _distance(tmp_path / "a.png", tmp_path / "other.png") > DEFAULT_MAX_DISTANCE


def test_pairs_found_in_blocks_are_those_of_the_full_distance_matrix():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=300, dtype=np.int64).astype(np.uint64)
    hashes[5], hashes[100] = hashes[7] ^ np.uint64(3), hashes[7]  # 2 bits from 7, and an exact copy
    usable = np.ones(300, dtype=bool)
    usable[100] = False  # an undecodable image pairs with nothing
    full = hamming_matrix(hashes)
    expected = [(i, j, int(full[i, j])) for i in range(300) for j in range(i + 1, 300)
                if full[i, j] <= 20 and usable[i] and usable[j]]
    assert (5, 7, 2) in expected and near_pairs(hashes, 20, usable, block=64) == expected
    np.fill_diagonal(full, 64)
    np.testing.assert_array_equal(nearest_distances(hashes, block=50), full.min(axis=1))


def test_union_find_merges_chains_of_pairs():
    groups = ("g3", "g1", "g2", "g4", "g5")
    merged = merged_groups(groups, [(0, 1, 2), (1, 2, 0), (3, 3, 0)])
    assert merged == ("g1", "g1", "g1", "g4", "g5")


@pytest.fixture()
def data_with_copies(tmp_path):
    """The generated set plus a resized copy and a brightened copy under other groups of the same class."""
    root = make_dataset(tmp_path / "train", groups_per_class=8, per_group=2)
    source = root / "CT_COVID" / "ct_covid0%0.png"
    scan = Image.fromarray(_scan(7, 64, 80))
    scan.save(source)  # a structured image, so its copies are unmistakable
    scan.resize((40, 32), Image.Resampling.LANCZOS).save(root / "CT_COVID" / "ct_covid_copy%0.png")
    ImageEnhance.Brightness(scan).enhance(1.1).save(root / "CT_COVID" / "ct_covid_bright%0.png")
    return root


def test_merging_puts_duplicates_in_one_group_and_one_split(data_with_copies):
    ids = ("CT_COVID/ct_covid0%0.png", "CT_COVID/ct_covid_copy%0.png", "CT_COVID/ct_covid_bright%0.png")
    raw = discover(data=data_with_copies)
    assert len({raw.groups[raw.ids.index(i)] for i in ids}) == 3
    splits = {}
    for size in (32, 48):  # the merged groups, and so the split, must not depend on image_size
        prepared = prepare_data(tiny_config(data_with_copies, image_size=size))
        ds = prepared.dataset
        assert len({ds.groups[ds.ids.index(i)] for i in ids}) == 1
        where = {ds.ids[k]: name for name in ("train", "val", "holdout") for k in prepared.split[name]}
        assert len({where[i] for i in ids}) == 1
        splits[size] = prepared.split_summary(tiny_config(data_with_copies, image_size=size))["sha256"]
    assert splits[32] == splits[48]
    off = prepare_data(tiny_config(data_with_copies, merge_duplicates=False)).dataset
    assert len({off.groups[off.ids.index(i)] for i in ids}) == 3


def test_an_image_in_two_classes_is_a_named_error(tmp_path):
    root = make_dataset(tmp_path / "train", groups_per_class=6, per_group=2)
    shutil.copy(root / "CT_COVID" / "ct_covid1%0.png", root / "CT_NonCOVID" / "stray%0.png")
    with pytest.raises(DataError, match=r"ct_covid1%0\.png \(CT_COVID\) and .*stray%0\.png \(CT_NonCOVID\)"):
        prepare_data(tiny_config(root))
    report = audit_config(tiny_config(root))
    assert report["errors"] and "stray%0.png" in report["errors"][0]
    assert report["cross_class_duplicates"][0]["kind"] == "bytes"
    assert audit_summary(report)["cross_class_duplicates"] == 1


def _twins_at_64px(root: Path, *, identical: bool) -> tuple[str, str]:
    """A 256 px scan in one class and, in the other, a file whose 64 px hash decode equals it: the same
    pixels (re-encoded, so the bytes differ) or four pixels one level brighter, which the downscale averages away."""
    scan = _scan(11, 256, 256)
    other = scan.copy()
    if not identical:
        other[100:104:2, 60:64:2] += 1
    Image.fromarray(scan).save(root / "CT_COVID" / "twin%0.png")
    Image.fromarray(other).save(root / "CT_NonCOVID" / "twin%0.png", compress_level=1)
    a, b = root / "CT_COVID" / "twin%0.png", root / "CT_NonCOVID" / "twin%0.png"
    assert a.read_bytes() != b.read_bytes()
    np.testing.assert_array_equal(decode_image(a, 64), decode_image(b, 64))  # the hashes cannot tell them apart
    return "CT_COVID/twin%0.png", "CT_NonCOVID/twin%0.png"


def test_images_alike_only_at_64px_are_not_identical_pixels(tmp_path):
    from trainers.data.duplicates import find_duplicates, hash_images

    root = make_dataset(tmp_path / "train", groups_per_class=6, per_group=2)
    a, b = _twins_at_64px(root, identical=False)
    prepare_data(tiny_config(root))  # not refused as one image labelled twice
    report = audit_config(tiny_config(root))
    assert not report["errors"] and report["cross_class_duplicates"] == []
    assert not any({p["a"], p["b"]} == {a, b} for p in report["exact_duplicates"]["pairs"])
    assert any({p["a"], p["b"]} == {a, b} and p["cross_class"] for p in report["near_duplicates"]["pairs"])
    ds = discover(data=root)
    dups = find_duplicates(ds, hash_images(ds, fingerprint=ds.fingerprint(), progress=False))
    assert (ds.ids.index(a), ds.ids.index(b)) in {(i, j) for i, j, _ in dups.near}  # still a near-duplicate pair
    assert dups.exact == ()


def test_identical_pixels_in_two_files_of_two_classes_are_still_refused(tmp_path):
    root = make_dataset(tmp_path / "train", groups_per_class=6, per_group=2)
    a, b = _twins_at_64px(root, identical=True)
    with pytest.raises(DataError, match=r"twin%0\.png \(CT_COVID\) and .*twin%0\.png \(CT_NonCOVID\) hold identical "
                                        r"pixels: one image labelled twice"):
        prepare_data(tiny_config(root))
    report = audit_config(tiny_config(root))
    assert report["cross_class_duplicates"] == [{"a": a, "b": b, "label_a": "CT_COVID", "label_b": "CT_NonCOVID",
                                                 "kind": "pixels"}]
    assert report["errors"] and "twin%0.png" in report["errors"][0]


def _format_dataset(root: Path, *, shortcut: bool, n: int = 40) -> Path:
    """Same kind of pixels in both classes; with `shortcut`, positives are large RGB JPEGs, negatives small grey PNGs."""
    rng = np.random.default_rng(3)
    for c, name in enumerate(("CT_COVID", "CT_NonCOVID")):
        (root / name).mkdir(parents=True)
        for i in range(n):
            if shortcut:
                h, w = (90, 120) if c == 0 else (64, 64)
            else:
                h, w = int(rng.integers(60, 120)), int(rng.integers(60, 120))
            img = Image.fromarray(np.clip(rng.normal(90, 25, (h, w)), 0, 255).astype(np.uint8))
            if (c == 0) if shortcut else bool(rng.integers(2)):
                img.convert("RGB").save(root / name / f"{name.lower()}{i}.jpg", quality=90)
            else:
                img.save(root / name / f"{name.lower()}{i}.png")
    return root


def test_shortcut_auc_is_high_when_format_gives_the_label_away_and_near_chance_otherwise(tmp_path):
    leaky = audit_config(tiny_config(_format_dataset(tmp_path / "leaky", shortcut=True)))["shortcut"]
    fair = audit_config(tiny_config(_format_dataset(tmp_path / "fair", shortcut=False)))["shortcut"]
    assert leaky["auc"] > 0.95 and leaky["warning"]
    assert abs(fair["auc"] - 0.5) < 0.2 and not fair["warning"]


def test_shortcut_auc_needs_two_groups_per_class():
    result = shortcut_auc(np.zeros((4, 2)), np.array([0, 0, 1, 1]), np.array(["a", "a", "b", "b"]))
    assert result["auc"] is None and "fewer than two groups" in result["error"]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda root: TrainConfig(data=str(root), group_regex="("), ConfigError, r"'group_regex' '\(' is not a valid"),
        (lambda root: discover(data=root, group_regex="(["), DataError, r"group_regex '\(\[' is not a valid"),
        (lambda root: discover(data=root, group_regex=r"^patient(\d+)"), DataError,
         r"group_regex '\^patient\(\\\\d\+\)' does not match file name 'ct_covid0%0\.png'"),
    ],
)
def test_bad_group_regex_is_a_named_error(synthetic_data, make, error, match):
    with pytest.raises(error, match=match):
        make(synthetic_data)


def test_group_summary_is_logged_and_singletons_warned(tmp_path, caplog):
    root = make_dataset(tmp_path / "train", groups_per_class=6, per_group=1)
    with caplog.at_level("INFO"):
        prepare_data(tiny_config(root))
    assert "groups CT_COVID" in caplog.text and "100% singletons" in caplog.text
    assert any(r.levelname == "WARNING" and "6 of its 6 groups hold one image" in r.message for r in caplog.records)


def test_audit_cli_writes_json_and_html(tmp_path, data_with_copies):
    out, page = tmp_path / "audit.json", tmp_path / "audit.html"
    done = lungsweep("audit", str(data_with_copies), "--out", str(out), "--html", str(page))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert {"version", "dataset", "settings", "groups", "near_duplicates", "exact_duplicates",
            "cross_class_duplicates", "split", "shortcut", "warnings", "errors"} <= set(report)
    assert report["near_duplicates"]["count"] == 3 and report["near_duplicates"]["groups_merged"] == 2
    assert report["groups"]["before_merge"]["CT_COVID"]["groups"] == 10
    assert report["groups"]["after_merge"]["CT_COVID"]["groups"] == 8
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "ct_covid_copy%0.png" in text and "data:image/png;base64," in text
    assert "near-duplicate pairs: 3" in done.stdout


def test_audit_cli_exits_non_zero_on_an_image_labelled_twice_and_on_a_bad_regex(tmp_path):
    root = make_dataset(tmp_path / "train", groups_per_class=6, per_group=2)
    shutil.copy(root / "CT_COVID" / "ct_covid1%0.png", root / "CT_NonCOVID" / "stray%0.png")
    done = lungsweep("audit", str(root), "--out", str(tmp_path / "a.json"))
    assert done.returncode == 1 and "error: " in done.stdout and "stray%0.png" in done.stdout
    assert json.loads((tmp_path / "a.json").read_text())["errors"]
    done = lungsweep("audit", str(root), "--group-regex", "(")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "'('" in done.stderr


def test_audit_smoke_on_a_handful_of_real_covid_ct_images(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared COVID-CT data not found at {SHARED_DATA}")
    rows = ["path,label"]
    for label in ("CT_COVID", "CT_NonCOVID"):
        files = sorted(f for f in (SHARED_DATA / label).iterdir() if f.suffix in (".png", ".jpg"))
        rows += [f"{f},{label}" for f in files[:20]]  # whole figures and neighbouring slices: real duplicates
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    report = audit_config(TrainConfig(manifest=str(tmp_path / "m.csv"), progress=False))
    assert report["dataset"]["images"] == 40 and not report["errors"]
    assert report["shortcut"]["auc"] is not None
    summary = audit_summary(report)
    assert set(summary["groups_per_class"]) == {"CT_COVID", "CT_NonCOVID"}
    assert summary["near_duplicate_pairs"] >= 1  # 1099/1100/1101.png are neighbouring slices of one scan


def test_lungsweep_train_audits_its_data_once_at_the_door(tmp_path, synthetic_data):
    """`lungsweep train` writes RUN/audit.json before training (a run or a bag); a resumed run keeps it."""
    import yaml

    from lungsweep.cli import main
    from trainers.audit import AUDIT_FILE, read_audit

    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in tiny_config(synthetic_data, epochs=1).to_dict().items()
                                      if v is not None}))
    run = tmp_path / "run"
    assert main(["-q", "train", "--config", str(config), "--out", str(run)]) == 0
    audit = read_audit(run / AUDIT_FILE)  # the run says how honest its groups are
    assert audit["dataset"]["images"] == 72 and audit["groups"]["after_merge"]["CT_COVID"]["groups"] == 12
    written = (run / AUDIT_FILE).stat().st_mtime_ns
    assert main(["-q", "train", "--config", str(config), "--out", str(run)]) == 2, "no --resume: refused"
    assert main(["-q", "train", "--config", str(config), "--out", str(run), "--resume"]) == 0
    assert (run / AUDIT_FILE).stat().st_mtime_ns == written, "audited once, not on every resume"

    bag = tmp_path / "bag"
    assert main(["-q", "train", "--config", str(config), "--out", str(bag), "--cv-folds", "3"]) == 0
    assert read_audit(bag / AUDIT_FILE)["dataset"]["fingerprint"] == audit["dataset"]["fingerprint"]
    assert not any(bag.glob(f"runs/*/{AUDIT_FILE}")), "no fold audits its data again"
