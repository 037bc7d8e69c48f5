"""DICOM and NIfTI: discovery by series and patient, HU windows, slices, cache keys, parity with prediction, bad input."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from medical_support import (
    copy_shipped, marked_slice, marked_volume, shipped, write_dicom, write_nifti, write_series,
)

from trainers import BadImageError, ConfigError, DataError, TrainConfig, decode_image, discover, load_images
from trainers.data.images import cache_key
from trainers.inference import Preprocessing
from trainers.data.medical import apply_window, is_dicom, is_medical, parse_slices, parse_window, read_slice

LUNG_CENTRE = -600.0  # the lung window's level: mid grey (128)


def centre(img: np.ndarray) -> int:
    return int(img[img.shape[0] // 2, img.shape[1] // 2])


def test_shipped_files_load_offline():
    import pydicom

    assert pydicom.dcmread(shipped("CT_small.dcm")).pixel_array.shape == (128, 128)
    assert pydicom.dcmread(shipped("MR_small.dcm")).pixel_array.shape == (64, 64)


@pytest.fixture
def ct_tree(tmp_path):
    """Two classes, two patients each, one 5-slice series per patient; half the files have no suffix."""
    root = tmp_path / "ct"
    values = [-900.0, -750.0, LUNG_CENTRE, -300.0, 0.0]
    write_series(root / "CT_COVID" / "p1", "covid1", "1.2.3.11", values)
    write_series(root / "CT_COVID" / "p2", "covid2", "1.2.3.12", values, suffix="")
    write_series(root / "CT_NonCOVID" / "p3", "normal3", "1.2.3.13", values)
    write_series(root / "CT_NonCOVID" / "p4", "normal4", "1.2.3.14", values, suffix="")
    return root


# --- discovery: series, slices, groups ----------------------------------------------------


def test_dicom_found_by_preamble_with_or_without_suffix(ct_tree):
    no_suffix = next(p for p in ct_tree.rglob("*") if p.is_file() and p.suffix == "")
    assert is_dicom(no_suffix) and is_medical(no_suffix)
    assert not is_dicom(ct_tree / "CT_COVID")  # a folder is not


@pytest.mark.parametrize("slices, per_series", [("middle", 1), ("all", 5), ("every 2", 3)])
def test_series_slices_and_patient_groups(ct_tree, slices, per_series):
    ds = discover(data=ct_tree, slices=slices)
    assert len(ds) == 4 * per_series
    assert set(ds.groups) == {"covid1", "covid2", "normal3", "normal4"}
    assert ds.positive == "CT_COVID" and ds.frames is not None
    assert all(f is None for f in ds.frames), "single-frame DICOMs are whole files"


def test_middle_is_the_middle_by_position_not_by_file_name(ct_tree):
    ds = discover(data=ct_tree, slices="middle")
    for path in ds.paths:  # files are named in reverse z order; the middle z holds -600 HU
        assert centre(decode_image(path, 32, window="lung")) == 128


def test_manifest_group_column_overrides_patient_id(tmp_path, ct_tree):
    files = sorted(p for p in ct_tree.rglob("*") if p.is_file())
    lines = ["path,label,group"] + [f"{p},{p.relative_to(ct_tree).parts[0]},site{i % 2}" for i, p in enumerate(files)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    ds = discover(manifest=tmp_path / "m.csv", slices="all")
    assert len(ds) == 20 and set(ds.groups) == {"site0", "site1"}


def test_multiframe_dicom_is_a_volume_of_slices(tmp_path):
    root = tmp_path / "mf"
    volume = np.stack([marked_slice(v) for v in (-1000.0, -800.0, LUNG_CENTRE, 100.0)])
    write_dicom(root / "A" / "a.dcm", volume, patient="pa", frames=True)
    write_dicom(root / "Non_A" / "b.dcm", volume, patient="pb", frames=True)
    ds = discover(data=root, slices="all")
    assert ds.ids[:4] == ("A/a.dcm#0", "A/a.dcm#1", "A/a.dcm#2", "A/a.dcm#3")
    assert ds.frames[:4] == (0, 1, 2, 3) and set(ds.groups) == {"pa", "pb"}
    assert centre(decode_image(ds.paths[2], 32, frame=ds.frames[2], window="lung")) == 128
    assert discover(data=root, slices="middle").ids == ("A/a.dcm#2", "Non_A/b.dcm#2")


def test_dicom_copies_are_found_slice_by_slice_and_confirmed_at_full_resolution(tmp_path):
    """A byte copy of a volume pairs slice k with slice k (never two slices of one file); a volume 10 HU
    brighter in four pixels per slice has the same 64 px hash decode but is no copy at full resolution."""
    import shutil

    from trainers.data.duplicates import find_duplicates, hash_images

    root = tmp_path / "d"
    volume = np.stack([marked_slice(v, 256) for v in (-1000.0, -800.0, LUNG_CENTRE)])
    twin = volume.copy()
    twin[:, 100:104:2, 60:64:2] += 10.0
    write_dicom(root / "A" / "a.dcm", volume, patient="pa", frames=True)
    shutil.copyfile(root / "A" / "a.dcm", root / "A" / "copy.dcm")
    write_dicom(root / "Non_A" / "b.dcm", twin, patient="pb", frames=True)
    ds = discover(data=root, slices="all")
    b = ds.ids.index("Non_A/b.dcm#1")
    np.testing.assert_array_equal(decode_image(ds.paths[1], 64, frame=1), decode_image(ds.paths[b], 64, frame=1))
    dups = find_duplicates(ds, hash_images(ds, fingerprint=ds.fingerprint(), progress=False))
    assert [(ds.ids[i], ds.ids[j], kind) for i, j, kind in dups.exact] == [
        (f"A/a.dcm#{k}", f"A/copy.dcm#{k}", "bytes") for k in range(3)]


@pytest.mark.parametrize("enhanced", ["shared", "per-frame"])
def test_enhanced_multiframe_rescale_comes_from_its_functional_groups(tmp_path, enhanced):
    """An enhanced CT keeps Rescale Slope/Intercept in (per-frame or shared) functional groups, not at the top."""
    volume = np.stack([marked_slice(v) for v in (-1000.0, LUNG_CENTRE, 50.0)])
    classic = write_dicom(tmp_path / "classic.dcm", volume, frames=True)
    modern = write_dicom(tmp_path / "enhanced.dcm", volume, frames=True, enhanced=enhanced)
    for k in range(3):
        for window in ("lung", "mediastinum"):
            np.testing.assert_array_equal(read_slice(modern, k, window), read_slice(classic, k, window))
    assert centre(read_slice(modern, 1, "lung")) == 128 and centre(read_slice(modern, 2, "mediastinum")) == 128


def test_nifti_axial_slices_grouped_by_volume(tmp_path):
    root = tmp_path / "nii"
    values = [-1000.0, LUNG_CENTRE, 0.0]
    write_nifti(root / "A" / "vol1.nii.gz", marked_volume(values))
    write_nifti(root / "A" / "vol2.nii", marked_volume(values))
    write_nifti(root / "Non_A" / "vol3.nii.gz", marked_volume(values))
    ds = discover(data=root, slices="all")
    assert ds.ids[:3] == ("A/vol1.nii.gz#0", "A/vol1.nii.gz#1", "A/vol1.nii.gz#2")
    assert set(ds.groups) == {"A/vol1.nii.gz", "A/vol2.nii", "Non_A/vol3.nii.gz"}
    middle = discover(data=root, slices="middle")
    assert middle.frames == (1, 1, 1)
    assert all(centre(decode_image(p, 32, frame=f)) == 128 for p, f in zip(middle.paths, middle.frames))


def test_nifti_slice_is_shown_anterior_up_and_patient_right_on_the_left(tmp_path):
    volume = np.full((20, 30, 3), -1000.0)
    volume[19, 29, :] = 500.0  # identity affine is RAS+: x = 19 is the patient's right-most, y = 29 the most anterior
    path = write_nifti(tmp_path / "v.nii", volume)
    plane = read_slice(path, 1, "lung")
    assert plane.shape == (30, 20) and plane[0, 0] == 255 and (plane == 255).sum() == 1


# --- windows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "window, expected, air",
    [
        ("lung", 128, 60), ("auto", 128, 60), ([1500, -600], 128, 60),  # -1000 HU: (-1000 + 1350) / 1500 * 255
        ("mediastinum", 0, 0), ([400, -600], 128, 0), ("none", 255, 0),
    ],
)
def test_hu_windows(tmp_path, window, expected, air):
    path = write_dicom(tmp_path / "w.dcm", marked_slice(LUNG_CENTRE))  # -600 HU inside air (-1000 HU)
    img = read_slice(path, None, window)
    assert centre(img) == expected and img[0, 0] == air


def test_rescale_slope_and_intercept_give_hu(tmp_path):
    path = write_dicom(tmp_path / "r.dcm", marked_slice(50.0))
    assert centre(read_slice(path, None, "mediastinum")) == 128  # 50 HU is the mediastinum level


def test_monochrome1_is_inverted(tmp_path):
    path = write_dicom(tmp_path / "m1.dcm", marked_slice(-1000.0 + 1500.0), photometric="MONOCHROME1")
    m2 = write_dicom(tmp_path / "m2.dcm", marked_slice(-1000.0 + 1500.0))
    np.testing.assert_array_equal(read_slice(path, None, "lung"), 255 - read_slice(m2, None, "lung"))


def test_xray_reads_its_own_window_tags(tmp_path):
    path = write_dicom(tmp_path / "dx.dcm", marked_slice(-500.0), modality="DX", window=(200.0, -500.0))
    img = read_slice(path, None, "auto")
    assert abs(centre(img) - 128) <= 1 and img[0, 0] == 0  # -1000 is below the file's window
    assert centre(read_slice(path, None, "lung")) != centre(img), "an explicit window overrides the tags"


def test_xray_reads_its_own_voi_lut(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    values = np.full((32, 32), 100.0)
    values[8:24, 8:24] = 200.0
    path = write_dicom(tmp_path / "cr.dcm", values, modality="CR")
    ds = pydicom.dcmread(path)
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUTData: an inverting 8-bit LUT
    ds.VOILUTSequence = Sequence([lut])
    ds.save_as(path)
    img = read_slice(path, None, "auto")
    assert centre(img) == 55 and img[0, 0] == 155


def test_apply_window_min_max_of_a_flat_image_is_black():
    assert apply_window(np.full((4, 4), 7.0), None).max() == 0


# --- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("window", "lungs", r"window 'lungs' is not one of auto, lung, mediastinum, none or \[width, level\]"),
        ("window", [0, 40], r"window \[0.0, 40.0\] is not .*width > 0"),
        ("window", [1, 2, 3], r"window \[1.0, 2.0, 3.0\] is not"),
        ("window", True, r"'window' must be str or list\[float\], got True"),
        ("slices", "some", r"slices 'some' is not one of middle, all or 'every N'"),
        ("slices", "every 0", r"slices 'every 0' is not"),
    ],
)
def test_bad_window_and_slices_are_refused_at_the_edge(key, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict({key: value})


def test_window_and_slices_round_trip():
    cfg = TrainConfig.from_dict({"window": [350, 50], "slices": "every 3"})
    assert cfg.window == [350.0, 50.0] and parse_window(cfg.window) == (350.0, 50.0)
    assert parse_slices(cfg.slices) == 3 and TrainConfig.from_dict(cfg.to_dict()) == cfg


# --- cache ---------------------------------------------------------------------------------


def test_a_changed_window_never_reads_a_stale_cache(ct_tree, isolated_cache):
    ds = discover(data=ct_tree)
    fp = ds.fingerprint()
    lung = load_images(ds, 32, fingerprint=fp, progress=False, window="lung")
    media = load_images(ds, 32, fingerprint=fp, progress=False, window="mediastinum")
    assert not isinstance(media.array, np.memmap), "another window decodes again"
    assert centre(lung.array[0]) == 128 and centre(media.array[0]) == 0
    again = load_images(ds, 32, fingerprint=fp, progress=False, window=[1500, -600])
    assert isinstance(again.array, np.memmap), "the same window under another spelling reads the cache"
    assert cache_key(fp, 32, "lung") != cache_key(fp, 32, "mediastinum") != cache_key(fp, 32, None)
    assert cache_key(fp, 32, None) == f"{fp[:32]}-s32-v1", "PNG/JPEG keys are unchanged"


def test_slice_policy_changes_the_fingerprint(ct_tree):
    assert discover(data=ct_tree, slices="middle").fingerprint() != discover(data=ct_tree, slices="all").fingerprint()


# --- parity: training decode == prediction decode, from the recorded preprocessing -----------


def test_prediction_decodes_exactly_what_training_cached(tmp_path, ct_tree):
    from ensemble import ExportedModel, decode_for, find_images, samples

    root = tmp_path / "mixed"
    write_nifti(root / "A" / "v.nii.gz", marked_volume([-1000.0, -700.0, -650.0, LUNG_CENTRE]))
    write_dicom(root / "Non_A" / "mf", np.stack([marked_slice(v) for v in (-100.0, -500.0, 40.0)]),
                patient="q", frames=True)
    write_series(root / "Non_A" / "s", "r", "1.2.3.99", [-950.0, -20.0, 30.0])
    cfg = TrainConfig(data=str(root), window="mediastinum", slices="all")
    prep = Preprocessing(image_size=40, mean=0.5, std=0.25, window=cfg.window, slices=cfg.slices)
    ds = discover(data=root, slices=cfg.slices)
    trained = load_images(ds, 40, fingerprint=ds.fingerprint(), progress=False, window=cfg.window).array

    record = json.loads(json.dumps(prep.to_dict()))  # as stored in checkpoint.json / manifest.json
    assert record["window"] == "mediastinum" and record["slices"] == "all"
    manifest = {"inputs": [{"name": "image_40", "image_size": 40}], "classes": ["A", "Non_A"],
                "positive": "A", "threshold": 0.5, "preprocessing": record}
    model = ExportedModel(root, manifest, runner=None)
    files = find_images([root])
    assert len(files) == 5  # the volume, the multi-frame file and three series files (one without suffix)
    rows = samples(files, model.slices)
    assert len(rows) == len(ds) == 4 + 3 + 3
    by_id = {str(root / i): k for k, i in enumerate(ds.ids)}
    for name, path, frame in rows:
        np.testing.assert_array_equal(decode_for(model, path, frame=frame)[40], trained[by_id[name]], err_msg=name)


# --- bad input: one named error per file, or skipped and listed ----------------------------


def _sr(root):
    copy_shipped("test-SR.dcm", root / "A" / "report.dcm")


def _jpeg_ls(root):
    import pydicom

    ds = pydicom.dcmread(shipped("MR_small_jpeg_ls_lossless.dcm"))
    ds.PatientID = "pj"
    ds.save_as(root / "A" / "jls.dcm")


def _nifti_2d(root):
    write_nifti(root / "A" / "flat.nii", marked_slice(0.0))


def _nifti_5d(root):
    write_nifti(root / "A" / "five.nii.gz", np.zeros((8, 8, 3, 2, 2)))


def _mixed_sizes(root):
    write_dicom(root / "A" / "m1.dcm", marked_slice(0.0, 32), patient="pm", series="1.2.3.77", z=0)
    write_dicom(root / "A" / "m2.dcm", marked_slice(0.0, 24), patient="pm", series="1.2.3.77", z=1)


def _anonymous(root):
    write_dicom(root / "A" / "anon.dcm", marked_slice(0.0), patient="", study=None)


def _cut_short(root):  # preamble and 'DICM' intact, the file meta header cut
    (root / "A").mkdir(parents=True, exist_ok=True)
    (root / "A" / "cut.dcm").write_bytes(shipped("CT_small.dcm").read_bytes()[:150])


@pytest.mark.parametrize(
    "build, culprit, match",
    [
        (_sr, "report.dcm", r"holds no image .*structured report"),
        (_nifti_2d, "flat.nii", r"shape \(32, 32\) \(2-D\).*3-D volumes"),
        (_nifti_5d, "five.nii.gz", r"\(5-D\)"),
        (_mixed_sizes, "m1.dcm", r"series 1.2.3.77 mixes slice sizes \[\(24, 24\), \(32, 32\)\]"),
        (_anonymous, "anon.dcm", r"neither PatientID nor StudyInstanceUID"),
        (_cut_short, "cut.dcm", r"DICOM file is truncated: it ends after 150 bytes.*copy it again"),
    ],
)
def test_unusable_files_are_named_or_skipped_and_listed(tmp_path, build, culprit, match):
    root = tmp_path / "d"
    write_dicom(root / "A" / "good.dcm", marked_slice(0.0), patient="g1")
    write_dicom(root / "Non_A" / "good.dcm", marked_slice(0.0), patient="g2")
    build(root)
    with pytest.raises(BadImageError, match=rf"cannot decode image .*{culprit}: .*{match}.*skip_bad"):
        discover(data=root)
    ds = discover(data=root, skip_bad=True)
    assert ds.ids == ("A/good.dcm", "Non_A/good.dcm")
    assert ds.skipped[0][0] == f"A/{culprit}" and re.search(match, ds.skipped[0][1])


def test_dicom_without_a_decoder_names_the_package_and_writes_no_cache(tmp_path, isolated_cache):
    root = tmp_path / "d"
    write_dicom(root / "A" / "good.dcm", marked_slice(0.0), patient="g1")
    write_dicom(root / "Non_A" / "good.dcm", marked_slice(0.0), patient="g2")
    _jpeg_ls(root)
    ds = discover(data=root)
    fp = ds.fingerprint()
    with pytest.raises(BadImageError, match=r"jls.dcm: .*JPEG-LS.*needs a decoder .*pip install pylibjpeg"):
        load_images(ds, 32, fingerprint=fp, progress=False)
    written = [p for p in isolated_cache.glob(f"{fp[:32]}*") if p.suffix != ".lock"]  # the decode lock may stay
    assert not written, "nothing half-written"
    kept = load_images(ds, 32, fingerprint=fp, progress=False, skip_bad=True)
    assert ds.ids == ("A/good.dcm", "A/jls.dcm", "Non_A/good.dcm")
    assert kept.keep.tolist() == [True, False, True] and kept.skipped[0][0] == "A/jls.dcm"


def test_a_structured_report_named_explicitly_fails_at_decode(tmp_path):
    path = copy_shipped("test-SR.dcm", tmp_path / "sr.dcm")
    with pytest.raises(BadImageError, match=r"sr.dcm: DICOM holds no pixel data \(Modality SR\)"):
        decode_image(path, 32)


def _pixel_offset() -> int:
    import pydicom

    return int(pydicom.dcmread(shipped("CT_small.dcm"))["PixelData"].file_tell)


@pytest.mark.parametrize("cut", [
    lambda px: 132,  # nothing after 'DICM'
    lambda px: 150,  # inside the file meta header
    lambda px: 1500,  # inside the dataset's header
    lambda px: px - 12,  # between elements: the header names an image, the pixel data never starts
    lambda px: px - 2,  # inside the pixel data element's length field
    lambda px: px + 10,  # just inside the pixel data
    lambda px: px + 20000,  # in the middle of the pixel data
], ids=["after-DICM", "file-meta", "dataset-header", "before-pixels", "pixel-length", "pixels-start", "pixels-middle"])
def test_a_dicom_cut_short_is_called_truncated_wherever_the_cut_falls(tmp_path, cut):
    data = shipped("CT_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:cut(_pixel_offset())])
    with pytest.raises(BadImageError, match=r"cut.dcm: DICOM file is truncated: .*incomplete copy.*copy it again") as e:
        decode_image(path, 32)
    assert "structured report" not in str(e.value)
    path.write_bytes(data)  # the whole file decodes
    assert decode_image(path, 32).shape == (32, 32)


def test_png_folders_are_untouched_by_the_medical_path(synthetic_data):
    ds = discover(data=synthetic_data)
    assert ds.frames is None and ds.skipped == ()


def test_a_folder_of_only_unusable_files_says_so(tmp_path):
    root = tmp_path / "d"
    _sr(root)
    copy_shipped("test-SR.dcm", root / "Non_A" / "r.dcm")
    with pytest.raises(DataError, match="holds one class only|none"):
        discover(data=root, skip_bad=True)


def test_files_left_out_at_discovery_are_listed_with_the_run(tmp_path):
    from trainers.data.prepare import prepare_data

    root = tmp_path / "d"
    for c in ("A", "Non_A"):
        for g in range(6):
            write_dicom(root / c / f"{g}.dcm", marked_slice(-100.0 * g - (37.0 if c == "Non_A" else 0.0)), patient=f"{c}{g}",
                        series=f"1.2.{len(c)}.{g}")  # one series per patient: a shared one would be one sample
    _sr(root)
    # both classes reuse the same generated slices: not duplicates to merge or refuse here
    cfg = TrainConfig(data=str(root), skip_bad=True, image_size=32, val_fraction=0.2, holdout_fraction=0.2,
                      progress=False, window="lung", merge_duplicates=False)
    prepared = prepare_data(cfg)
    assert len(prepared.dataset) == 12 and prepared.images.keep.all()
    assert [s[0] for s in prepared.images.skipped] == ["A/report.dcm"]  # -> RUN/skipped.yaml
    with pytest.raises(BadImageError, match="report.dcm"):
        prepare_data(cfg.replace(skip_bad=False))


def test_empty_patient_id_falls_back_to_the_study(tmp_path):
    root = tmp_path / "d"
    write_dicom(root / "A" / "a.dcm", marked_slice(0.0), patient="", study="1.2.840.99.1")
    write_dicom(root / "Non_A" / "b.dcm", marked_slice(0.0), patient="pb")
    assert discover(data=root).groups == ("1.2.840.99.1", "pb")
