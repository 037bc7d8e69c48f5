from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from trainers import BadImageError, DataError, decode_image, discover, infer_group, load_images
from trainers.data.images import default_cache_dir


@pytest.mark.parametrize(
    "name, regex, group",
    [
        ("2020.02.10.20021584-p6-52%0.png", None, "2020.02.10.20021584-p6"),
        ("2020.01.24.919183-p27-132.png", None, "2020.01.24.919183-p27"),
        ("2020.01.24.919183-p27-133.png", None, "2020.01.24.919183-p27"),  # crops of one page: one group
        ("2020.03.21.20040691-p18-67-1.png", None, "2020.03.21.20040691-p18"),
        ("2020.03.21.20040691-p18-6-6.png", None, "2020.03.21.20040691-p18"),
        ("63%1.jpg", None, "63"),
        ("1029.png", None, "1029"),
        ("2020.03.19.20038539.png", None, "2020.03.19.20038539"),  # no letter: never cut to a date
        ("case_12_slice_003.png", None, "case_12_slice"),
        ("2020.01.24.919183-p27-132.png", r"^(.*-p\d+)-", "2020.01.24.919183-p27"),
        ("patient7_slice3.png", r"patient\d+", "patient7"),
    ],
)
def test_group_is_inferred_from_the_file_name(name, regex, group):
    assert infer_group(name, regex) == group


def test_folder_dataset_classes_positive_and_groups(synthetic_data):
    ds = discover(data=synthetic_data)
    assert ds.classes == ("CT_COVID", "CT_NonCOVID")
    assert ds.positive == "CT_COVID"
    assert ds.binary_labels.sum() == 36 and len(ds) == 72
    assert len(set(ds.groups)) == 24
    assert ds.fingerprint() == discover(data=synthetic_data).fingerprint()


def test_positive_defaults_past_non_and_normal(tmp_path):
    from tests_support import two_class_folder

    root = two_class_folder(tmp_path, ("NORMAL", "PNEUMONIA"))
    assert discover(data=root).positive == "PNEUMONIA"
    assert discover(data=root, positive="NORMAL").positive == "NORMAL"


def test_manifest_with_groups(tmp_path, synthetic_data):
    files = sorted(p for p in synthetic_data.rglob("*") if p.is_file())
    lines = ["path,label,group"] + [f"{p},{p.parent.name},g{i % 5}" for i, p in enumerate(files)]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    ds = discover(manifest=tmp_path / "m.csv")
    assert len(ds) == len(files) and set(ds.groups) == {f"g{i}" for i in range(5)}


def test_every_image_mode_decodes_to_a_padded_grey_square(tmp_path):
    pixels = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (20, 1))  # 20 x 50, not square
    paths = {
        "L": ("a.png", Image.fromarray(pixels)),
        "RGB": ("b.jpg", Image.fromarray(pixels).convert("RGB")),
        "RGBA": ("c.png", Image.fromarray(pixels).convert("RGBA")),
        "I;16": ("d.png", Image.fromarray(pixels.astype(np.uint16) * 257)),
        "P": ("e.png", Image.fromarray(pixels).convert("P")),
    }
    for mode, (name, img) in paths.items():
        img.save(tmp_path / name)
        out = decode_image(tmp_path / name, 32)
        assert out.shape == (32, 32) and out.dtype == np.uint8, mode
        assert out[:6].max() == 0 and out[-6:].max() == 0, f"{mode}: wide image is padded top and bottom"
        assert out[16].max() > 200, mode


def test_decoded_images_are_cached_and_memory_mapped(synthetic_data):
    ds = discover(data=synthetic_data)
    fp = ds.fingerprint()
    first = load_images(ds, 24, fingerprint=fp, progress=False)
    assert any(default_cache_dir().glob(f"{fp[:32]}-s24-*.npy"))
    second = load_images(ds, 24, fingerprint=fp, progress=False)
    assert isinstance(second.array, np.memmap), "second load reads the cache instead of decoding"
    np.testing.assert_array_equal(first.array, second.array)


# --- bad input: one clear error that names the culprit --------------------------------


def test_truncated_image_is_named(tmp_path, synthetic_data):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_data, root)
    victim = sorted((root / "CT_COVID").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    ds = discover(data=root)
    with pytest.raises(BadImageError, match=f"cannot decode image .*{victim.name}.*skip_bad"):
        load_images(ds, 24, fingerprint=ds.fingerprint(), progress=False)
    kept = load_images(ds, 24, fingerprint=ds.fingerprint(), progress=False, skip_bad=True)
    assert kept.keep.sum() == len(ds) - 1
    assert kept.skipped[0][0] == f"CT_COVID/{victim.name}"


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda r: r / "missing", r"data folder .*missing does not exist; give a folder with one sub-folder per class"),
        (lambda r: _folders(r, {"CT_COVID": 3, "CT_NonCOVID": 0}), r"class folder .*CT_NonCOVID holds no PNG or JPEG"),
        (lambda r: _folders(r, {"CT_COVID": 3}), r"holds one class only \(CT_COVID\)"),
        (lambda r: _folders(r, {"A": 2, "B": 2}), r"cannot tell the positive class among \['A', 'B'\]"),
        (lambda r: _folders(r, {}), r"has no class sub-folders"),
    ],
)
def test_bad_dataset_folders(tmp_path, build, match):
    with pytest.raises(DataError, match=match):
        discover(data=build(tmp_path / "d"))


def test_manifest_pointing_at_a_missing_image(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nnot_here.png,CT_COVID\n")
    with pytest.raises(DataError, match=r"line 2: image .*not_here.png does not exist"):
        discover(manifest=tmp_path / "m.csv")
    with pytest.raises(DataError, match=r"manifest .*absent.csv does not exist"):
        discover(manifest=tmp_path / "absent.csv")


def _folders(root, counts):
    root.mkdir(parents=True)
    for name, n in counts.items():
        (root / name).mkdir()
        for i in range(n):
            Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(root / name / f"{i}.png")
    return root
