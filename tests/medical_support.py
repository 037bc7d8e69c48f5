"""DICOM and NIfTI files built in tmp folders from pydicom's own shipped test files and numpy: no binary data checked in."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

_UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's documented example root; test uids only


def shipped(name: str) -> Path:
    """A file shipped inside the pydicom wheel (never downloaded): CT_small.dcm, MR_small.dcm, test-SR.dcm ..."""
    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    assert path.is_file(), f"{name} is not shipped with this pydicom"
    return path


def write_dicom(
    path: Path,
    hu: np.ndarray,
    *,
    patient: str | None = "P1",
    study: str | None = "1.2.3.1",
    series: str = "1.2.3.4",
    number: int = 1,
    z: float = 0.0,
    modality: str = "CT",
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    frames: bool = False,
    enhanced: str | None = None,
) -> Path:
    """CT_small.dcm with new pixels (HU, stored with intercept -1024) and identity tags; (F, H, W) with frames=True.

    enhanced="shared" or "per-frame": the rescale sits only in the functional groups, as an
    enhanced multi-frame CT keeps it ("per-frame": frame k has intercept -1024 - 100 k)."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(shipped("CT_small.dcm"))
    stored = np.asarray(hu, dtype=np.int32) + 1024
    if enhanced == "per-frame":
        stored = stored + 100 * np.arange(hu.shape[0])[:, None, None]
    ds.PixelData = stored.astype(np.int16).tobytes()
    ds.Rows, ds.Columns = int(hu.shape[-2]), int(hu.shape[-1])
    if frames:
        ds.NumberOfFrames = int(hu.shape[0])
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if enhanced is not None:
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        def group(intercept: int) -> Dataset:
            transform = Dataset()
            transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, intercept, "HU"
            item = Dataset()
            item.PixelValueTransformationSequence = Sequence([transform])
            return item

        del ds.RescaleSlope, ds.RescaleIntercept
        if enhanced == "shared":
            ds.SharedFunctionalGroupsSequence = Sequence([group(-1024)])
        else:
            ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
            ds.PerFrameFunctionalGroupsSequence = Sequence([group(-1024 - 100 * k) for k in range(hu.shape[0])])
    for tag, value in (("PatientID", patient), ("StudyInstanceUID", study)):
        if value is None:
            if tag in ds:
                delattr(ds, tag)
        else:
            setattr(ds, tag, value)
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = generate_uid(prefix=_UID_ROOT)
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.Modality = modality
    ds.PhotometricInterpretation = photometric
    if window is not None:
        ds.WindowWidth, ds.WindowCenter = window
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def marked_slice(value: float, size: int = 32) -> np.ndarray:
    """A slice of air (-1000 HU) with a centre square at `value` HU: which slice was read shows in its pixels."""
    hu = np.full((size, size), -1000.0)
    hu[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = value
    return hu


def write_series(folder: Path, patient: str, series: str, values: list[float], *, suffix: str = ".dcm",
                 shuffle: bool = True, size: int = 32) -> list[Path]:
    """One CT series, slice k at z = k with a centre at values[k] HU; files named out of z order."""
    order = list(range(len(values)))
    if shuffle:
        order = order[::-1]
    paths = []
    for name_index, k in enumerate(order):
        paths.append(write_dicom(
            folder / f"{patient}_{series.rsplit('.', 1)[-1]}_{name_index:03d}{suffix}", marked_slice(values[k], size),
            patient=patient, series=series, number=name_index + 1, z=float(k),
        ))
    return paths


def write_nifti(path: Path, volume: np.ndarray, affine: np.ndarray | None = None) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(volume, dtype=np.int16), np.eye(4) if affine is None else affine), str(path))
    return path


def marked_volume(values: list[float], size: int = 32) -> np.ndarray:
    """(x, y, z) volume whose axial slice k has a centre at values[k] HU."""
    return np.stack([marked_slice(v, size) for v in values], axis=-1)


def copy_shipped(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shipped(name), dest)
    return dest
