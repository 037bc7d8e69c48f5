"""DICOM and NIfTI: which files they are, which slices become samples, and their pixels as windowed uint8.

    is_medical(path)                          # DICOM by its 'DICM' preamble (any suffix), NIfTI by .nii / .nii.gz
    expand([(key, path), ...], "middle")      # slices to keep per file or DICOM series, with their groups
    read_slice(path, frame, window)           # one slice -> (H, W) uint8, the window applied

The one place that reads these formats; trainers.data.images.decode_image_sizes calls
read_slice for them, so training, evaluation, prediction and export see the same pixels.

Windows: `auto` (CT and NIfTI: lung; CR/DX: the file's own VOI LUT or window tags,
else min-max; other modalities: min-max), `lung` (W1500/L-600), `mediastinum`
(W350/L50), `[width, level]` in HU (after RescaleSlope/Intercept), or `none`
(min-max of each image). MONOCHROME1 is inverted after windowing.
Groups: PatientID, else StudyInstanceUID (a DICOM with neither is refused: an
ungrouped slice would leak a patient across splits); a NIfTI volume is its own group.
"""
from __future__ import annotations

import functools
import os
import re
import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BadImageError

__all__ = [
    "WINDOWS", "WINDOW_NAMES", "SLICE_POLICIES", "MedicalSample", "is_dicom", "is_nifti", "is_medical",
    "parse_window", "parse_slices", "expand", "read_slice", "apply_window", "MEDICAL_DECODE_VERSION",
]


# What DICOM / NIfTI decoding gives, in the cache key of such datasets: bumped when decoded pixels
# change, so no stale cache is read (2: enhanced multi-frame rescale read from functional groups)
MEDICAL_DECODE_VERSION = 2
WINDOWS = {"lung": (1500.0, -600.0), "mediastinum": (350.0, 50.0)}  # name -> (width, level) in HU
WINDOW_NAMES = ("auto", "lung", "mediastinum", "none")
SLICE_POLICIES = ("middle", "all", "every N")
XRAY_MODALITIES = ("CR", "DX")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_EVERY = re.compile(r"^every\s+(\d+)$")

# transfer syntaxes pydicom cannot decode alone -> what to install
_DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Baseline (Pillow usually does it)
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
}


# --- what a file is ----------------------------------------------------------------------


def is_dicom(path: str | Path) -> bool:
    """A DICOM Part 10 file: 'DICM' at byte 128, whatever the suffix."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_medical(path: str | Path) -> bool:
    return is_nifti(path) or is_dicom(path)


# --- config values -----------------------------------------------------------------------


def parse_window(value: Any) -> tuple[float, float] | str | None:
    """'auto' stays 'auto'; a name or [width, level] -> (width, level); 'none' -> None (min-max)."""
    allowed = f"one of {', '.join(WINDOW_NAMES)} or [width, level] with width > 0"
    if isinstance(value, str):
        if value == "auto":
            return "auto"
        if value == "none":
            return None
        if value in WINDOWS:
            return WINDOWS[value]
        raise ValueError(f"window {value!r} is not {allowed}")
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        width, level = float(value[0]), float(value[1])
        if width > 0:
            return (width, level)
    raise ValueError(f"window {value!r} is not {allowed}")


def parse_slices(value: Any) -> int | None:
    """'middle' -> None (one slice per volume or series); 'all' -> 1; 'every N' -> N."""
    if value == "middle":
        return None
    if value == "all":
        return 1
    match = _EVERY.match(value.strip()) if isinstance(value, str) else None
    if match and int(match.group(1)) >= 1:
        return int(match.group(1))
    raise ValueError(f"slices {value!r} is not one of middle, all or 'every N' with N >= 1 (e.g. 'every 4')")


def _choose(n: int, step: int | None) -> list[int]:
    return [n // 2] if step is None else list(range(0, n, step))


# --- which samples -----------------------------------------------------------------------


@dataclass(frozen=True)
class MedicalSample:
    key: str  # the caller's key of the file (relative path), '#k' added for a slice of a volume
    path: str
    frame: int | None  # slice index inside the file; None: the file is one 2-D image
    group: str | None  # PatientID / StudyInstanceUID / the volume; None when not known


def expand(
    files: Sequence[tuple[str, str]], slices: Any = "middle", *, need_group: bool = True
) -> tuple[list[MedicalSample], list[tuple[str, str]]]:
    """The samples of DICOM and NIfTI files (key, path), and the (path, reason) of files that cannot be used.

    Single-frame DICOMs sharing a SeriesInstanceUID (and key folder) are one series,
    ordered by ImagePositionPatient along the slice normal, else InstanceNumber; a
    multi-frame DICOM or a NIfTI volume is a series of its own slices. The slice
    policy picks from each series. Samples keep the order of `files`.
    """
    step = parse_slices(slices)
    samples: list[MedicalSample] = []
    bad: list[tuple[str, str]] = []
    series: dict[tuple[str, str], list[tuple[tuple, str, str, str | None, tuple[int, int]]]] = defaultdict(list)
    order: dict[str, int] = {key: i for i, (key, _) in enumerate(files)}
    for key, path in files:
        try:
            if is_nifti(path):
                n = _nifti_depth(path)
                samples.extend(MedicalSample(f"{key}#{k}", path, k, key) for k in _choose(n, step))
                continue
            head = _dicom_header(path)
            group = _dicom_group(head, path, need_group)
            frames = int(head.get("NumberOfFrames", 1) or 1)
            if frames > 1:
                samples.extend(MedicalSample(f"{key}#{k}", path, k, group) for k in _choose(frames, step))
                continue
            uid = str(head.get("SeriesInstanceUID", "") or "") or f"file:{key}"
            folder = str(Path(key).parent)
            series[(folder, uid)].append((_slice_position(head), key, path, group, (head.Rows, head.Columns)))
        except BadImageError as e:
            bad.append((e.path, e.reason))
    for (_, uid), members in series.items():
        members.sort(key=lambda m: (m[0], m[1]))
        sizes = {m[4] for m in members}
        if len(sizes) > 1:
            first = members[0][4]
            odd = next(m for m in members if m[4] != first)
            bad.extend(
                (m[2], f"series {uid} mixes slice sizes {sorted(sizes)} (this file is {m[4][0]}x{m[4][1]}, "
                       f"{odd[2]} differs); split the series or remove the odd slices")
                for m in members
            )
            continue
        samples.extend(MedicalSample(m[1], m[2], None, m[3]) for m in (members[i] for i in _choose(len(members), step)))
    samples.sort(key=lambda s: (order[s.key if s.frame is None else s.key.rsplit("#", 1)[0]], s.frame or 0))
    return samples, bad


def _dicom_header(path: str) -> Any:
    head = _dcmread(path, stop_before_pixels=True)
    if "Rows" not in head or "Columns" not in head:
        cut = _cut_short(path, head)
        if cut:
            raise BadImageError(path, cut)
        raise BadImageError(
            path, f"DICOM holds no image (Modality {head.get('Modality', '?')}, no Rows/Columns or pixel data); "
            "a structured report or other non-image object cannot be a sample"
        )
    return head


_TRUNCATED = "DICOM file is truncated: {where}; it is an incomplete copy (cut short), so copy it again from its source"


def _dcmread(path: str, **kwargs: Any) -> Any:
    """pydicom.dcmread, its errors as BadImageError naming the file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, **kwargs)
    except struct.error as e:  # an element's tag or length field is short: the file ends inside it
        raise BadImageError(path, _TRUNCATED.format(
            where=f"it ends after {_size(path)} bytes, inside a data element's header ({e})")) from e
    except (InvalidDicomError, OSError, ValueError, EOFError) as e:
        raise BadImageError(path, f"not a readable DICOM file ({e})") from e


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def _cut_short(path: str, ds: Any) -> str | None:
    """The truncation message when `path` ends before the elements read from it do, else None.

    pydicom reads a cut file without complaint: it stops at the end of the file and keeps
    the last value short. The lengths it read say where the file should end: the file meta
    group length, and each top-level element's offset plus its declared length.
    """
    from pydicom.dataelem import RawDataElement

    declared = 0
    meta = getattr(ds, "file_meta", None)
    group_length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    if getattr(ds, "preamble", None) is not None:  # preamble and 'DICM', then at least one element's header
        declared = 128 + 4 + (8 if group_length is None else 12 + int(group_length))
    for elem in ds.elements():  # raw elements keep their offset and declared length (converted ones do not)
        if isinstance(elem, RawDataElement) and elem.length != 0xFFFFFFFF:
            declared = max(declared, elem.value_tell + elem.length)
    size = _size(path)
    if 0 <= size < declared:
        return _TRUNCATED.format(
            where=f"it ends after {size} bytes, but its header says it runs to at least byte {declared}")
    return None


def _dicom_group(head: Any, path: str, need_group: bool) -> str | None:
    for tag in ("PatientID", "StudyInstanceUID"):
        value = str(head.get(tag, "") or "").strip()
        if value:
            return value
    if need_group:
        raise BadImageError(
            path, "DICOM has neither PatientID nor StudyInstanceUID, so its patient is unknown and splits could "
            "leak it; fill PatientID, or give a manifest with a group column"
        )
    return None


def _slice_position(head: Any) -> tuple:
    """Sort key: position along the slice normal, else InstanceNumber, else none."""
    try:
        pos = np.asarray([float(v) for v in head.ImagePositionPatient])
        orient = np.asarray([float(v) for v in head.ImageOrientationPatient])
        normal = np.cross(orient[:3], orient[3:])
        return (0, float(pos @ normal), 0)
    except (AttributeError, ValueError, TypeError):
        pass
    number = head.get("InstanceNumber", None)
    return (1, 0.0, int(number)) if number not in (None, "") else (2, 0.0, 0)


def _nifti_depth(path: str) -> int:
    img = _nifti_image(path)
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise BadImageError(
            path, f"NIfTI has shape {tuple(shape)} ({len(shape)}-D); lungsweep reads 3-D volumes (x, y, z) "
            "and takes axial slices: save a 2-D image as PNG, or split a 4-D/5-D series into 3-D volumes"
        )
    return int(shape[_axial_axis(img.affine)])


def _nifti_image(path: str) -> Any:
    import nibabel as nib

    try:
        return nib.load(path)
    except Exception as e:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors...
        raise BadImageError(path, f"not a readable NIfTI file ({e})") from e


def _axial_axis(affine: np.ndarray) -> int:
    import nibabel as nib

    codes = nib.aff2axcodes(affine)
    return next((i for i, c in enumerate(codes[:3]) if c in ("S", "I")), 2)


# --- pixels -------------------------------------------------------------------------------


def read_slice(path: str | Path, frame: int | None, window: Any = "auto") -> np.ndarray:
    """One slice of a DICOM or NIfTI file -> (H, W) uint8, windowed. Raises BadImageError naming the file."""
    path = str(path)
    win = parse_window(window)
    if is_nifti(path):
        values = _nifti_slice(path, frame)
        return apply_window(values, WINDOWS["lung"] if win == "auto" else win)
    return _dicom_slice(path, frame, win)


def apply_window(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """HU (or any float values) -> uint8: linear over [level - width/2, level + width/2]; None: min-max."""
    values = np.asarray(values, dtype=np.float32)
    if window is None:
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            return np.zeros(values.shape, np.uint8)
        return np.round((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    width, level = window
    scaled = (values - (level - width / 2.0)) * (255.0 / width)
    return np.round(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def _nifti_slice(path: str, frame: int | None) -> np.ndarray:
    import nibabel as nib

    img = _nifti_image(path)
    if len(img.shape) not in (3, 4) or (len(img.shape) == 4 and img.shape[3] != 1):
        _nifti_depth(path)  # raises the shape error
    axis = _axial_axis(img.affine)
    k = img.shape[axis] // 2 if frame is None else frame
    if not 0 <= k < img.shape[axis]:
        raise BadImageError(path, f"slice {k} is outside the volume's {img.shape[axis]} axial slices")
    index: list[Any] = [slice(None)] * len(img.shape)
    index[axis] = k
    try:
        data = _gz_volume(path, *_stamp(path)) if path.lower().endswith(".gz") else img.dataobj
        plane = np.asarray(data[tuple(index)], dtype=np.float32)  # scl_slope/inter applied
    except Exception as e:
        raise BadImageError(path, f"NIfTI data cannot be read ({e})") from e
    plane = plane.reshape([s for i, s in enumerate(img.shape[:3]) if i != axis])
    # radiological view: anterior at the top, the patient's right on the image's left
    codes = [c for i, c in enumerate(nib.aff2axcodes(img.affine)[:3]) if i != axis]
    if codes[0] in ("L", "R"):  # rows run along anterior-posterior, columns along right-left
        plane, codes = plane.T, codes[::-1]
    if codes[0] == "A":  # index grows toward anterior: flip so the top row is the most anterior
        plane = plane[::-1]
    if codes[1] == "R":  # index grows toward the right: flip so the first column is the patient's right
        plane = plane[:, ::-1]
    return np.ascontiguousarray(plane)


def _stamp(path: str) -> tuple[int, int]:
    stat = Path(path).stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=2)
def _gz_volume(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """A gzipped volume read whole once: slicing it in place would decompress from the start for every
    slice. The two most recent are kept (the decode threads share one volume); keyed by mtime and size,
    so a rewritten file is read again."""
    return np.asanyarray(_nifti_image(path).dataobj)


def _dicom_slice(path: str, frame: int | None, win: tuple[float, float] | str | None) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

    ds = _dcmread(path)
    cut = _cut_short(path, ds)  # before any element is converted: it reads the raw elements' lengths
    if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if cut or ("Rows" in ds and "Columns" in ds):  # an image's header, then the file ends before its pixels
            raise BadImageError(path, cut or _TRUNCATED.format(
                where="its header names an image (Rows, Columns) but the file ends before the pixel data"))
        raise BadImageError(
            path, f"DICOM holds no pixel data (Modality {ds.get('Modality', '?')}); a structured report or "
            "other non-image object cannot be a sample"
        )
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = frames // 2 if frame is None and frames > 1 else frame
    try:
        raw = pixel_array(ds, index=index) if frames > 1 else ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError) as e:
        if cut:  # pydicom: "the number of bytes of pixel data is less than expected", or a codec's own error
            raise BadImageError(path, cut) from e
        package = _DECODERS.get(syntax)
        if package and ("missing" in str(e) or "plugin" in str(e) or "support" in str(e)):
            name = getattr(ds.file_meta.TransferSyntaxUID, "name", syntax)
            raise BadImageError(
                path, f"its transfer syntax {name} ({syntax}) needs a decoder that is not installed: "
                f"pip install {package}"
            ) from e
        raise BadImageError(path, f"DICOM pixel data cannot be decoded ({e})") from e
    except (AttributeError, IndexError, KeyError) as e:
        raise BadImageError(path, f"DICOM pixel data cannot be decoded ({e})") from e
    if raw.ndim == 3 and raw.shape[-1] in (3, 4) and int(ds.get("SamplesPerPixel", 1)) > 1:
        raw = raw[..., :3].astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32)  # colour -> grey
        return apply_window(raw, None if win == "auto" else win)
    if raw.ndim != 2:
        raise BadImageError(path, f"DICOM pixels have shape {raw.shape}; expected one 2-D frame")
    rescale = _functional_rescale(ds, index or 0)
    if rescale is not None:  # an enhanced multi-frame image keeps its rescale per frame, or shared
        values = raw.astype(np.float32) * rescale[0] + rescale[1]
    else:
        values = apply_modality_lut(raw, ds).astype(np.float32)  # RescaleSlope / RescaleIntercept -> HU
    modality = str(ds.get("Modality", "") or "")
    if win == "auto":
        win = WINDOWS["lung"] if modality == "CT" else None
        if modality in XRAY_MODALITIES:  # an X-ray is read through its own VOI LUT, else its window tags
            if "VOILUTSequence" in ds:
                top = float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
                lut_input = np.rint(values).astype(np.int32)  # a VOI LUT is indexed by whole stored values
                values, win = apply_voi_lut(lut_input, ds).astype(np.float32), (top, top / 2.0)
            elif "WindowCenter" in ds and "WindowWidth" in ds:
                win = (_first(ds.WindowWidth), _first(ds.WindowCenter))
    out = apply_window(values, win)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: low values are white
    return out


def _functional_rescale(ds: Any, frame: int) -> tuple[float, float] | None:
    """(slope, intercept) of `frame` from an enhanced image's functional groups: the frame's own
    Pixel Value Transformation first, then the shared one; None for a classic image (top-level tags)."""
    for name, item in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(name)
        if not groups or item >= len(groups):
            continue
        transform = groups[item].get("PixelValueTransformationSequence")
        if transform and "RescaleSlope" in transform[0] and "RescaleIntercept" in transform[0]:
            return float(transform[0].RescaleSlope), float(transform[0].RescaleIntercept)
    return None


def _first(value: Any) -> float:
    """WindowCenter / WindowWidth may hold several values; the first is the default view."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)
