"""The images a model is run on: image files found under the paths given, and the samples (slices) of each.

`lungsweep predict` and `lungsweep explain` read their inputs through here, so a DICOM series or
volume gives the same slices, named the same way, to both.
"""
from __future__ import annotations

from pathlib import Path

from trainers.data import IMAGE_SUFFIXES, expand, is_medical
from trainers.errors import BadImageError, DataError

__all__ = ["find_images", "samples"]


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Image files under the folders given and the files given, in a stable order.

    A folder is searched recursively for IMAGE_SUFFIXES, DICOM files (by their 'DICM'
    preamble, any suffix) and NIfTI volumes; a file named explicitly is kept whatever
    its suffix (it is reported if it does not decode). A name that is neither is an
    error before any work starts: it is almost always a typo.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend(sorted(
                p for p in item.rglob("*")
                if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_medical(p))
            ))
        elif item.is_file():
            found.append(item)
        else:
            raise DataError(f"{item} is neither an image file nor a folder; check the path")
    if not found:
        raise DataError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}, DICOM, .nii, .nii.gz) under {', '.join(map(str, inputs))}"
        )
    return found


def samples(paths: list[Path], slices: str) -> list[tuple[str, Path, int | None] | tuple[str, BadImageError]]:
    """(row name, file, slice) per sample: a PNG/JPEG or 2-D DICOM is one row, a volume or DICOM series
    gives the slices the model was trained on (`slices`, as discover does), named `path#index`; a
    file that cannot be read gives (name, error)."""
    medical = [str(p) for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES and is_medical(p)]
    found, bad = expand([(m, m) for m in medical], slices, need_group=False)
    by_file: dict[str, list] = {}
    for s in found:
        by_file.setdefault(s.path, []).append(s)
    errors = {path: BadImageError(path, reason) for path, reason in bad}
    out: list = []
    medical_set = set(medical)
    for p in paths:
        if str(p) not in medical_set:
            out.append((str(p), p, None))
        elif str(p) in errors:
            out.append((str(p), errors[str(p)]))
        else:
            out.extend((s.key, p, s.frame) for s in by_file.get(str(p), []))
    return out
