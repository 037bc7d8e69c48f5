"""Find the samples of a dataset: a class-per-folder tree or a CSV manifest."""
from __future__ import annotations

import csv
import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadImageError, DataError
from .groups import SWALLOW_MIN_IMAGES, SWALLOW_SHARE, Swallowed, swallowed
from .medical import expand, is_medical

__all__ = ["Dataset", "Grouping", "discover", "infer_group", "default_positive"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_NEGATIVE_PREFIXES = ("non", "normal")
_SEPARATORS = re.compile(r"([-_.])")
_LETTER = re.compile(r"[A-Za-z]")
_REMEDY = ("give group_regex (its first capture group on each file name is the group) or a manifest CSV with a "
           "group column; README.md, 'Groups on common public layouts', has recipes")


@dataclass(frozen=True)
class Grouping:
    """How a dataset's groups were formed.

    rule: "group_regex", "manifest", "dicom" (PatientID / StudyInstanceUID; a NIfTI volume is its own
    group), "given" (a Dataset built by hand), or a reading of the file names: "name" (without the
    '%N' crop suffix and the trailing numeric indices), "name+K" (keeping K more trailing indices),
    "stem" (the whole stem before '%': one group per file, crops of one figure together).
    """

    rule: str = "given"
    description: str = "groups given with the dataset"
    reason: str = "set by whoever built the Dataset"

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "description": self.description, "reason": self.reason}


@dataclass(frozen=True)
class Dataset:
    """Sample ids, absolute paths, integer labels and groups, in one fixed order."""

    root: str
    ids: tuple[str, ...]  # path relative to the root, posix; the key predictions are stored by
    paths: tuple[str, ...]
    labels: np.ndarray  # int64, index into `classes`
    groups: tuple[str, ...]
    classes: tuple[str, ...]  # sorted; labels index into it
    positive: str
    # slice index inside each path (DICOM multi-frame, NIfTI); None per sample for a whole 2-D
    # file; None overall when every sample is a PNG/JPEG. Slice ids read `relpath#index`.
    frames: tuple[int | None, ...] | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # (id, reason) of DICOM/NIfTI files left out with skip_bad
    grouping: Grouping = Grouping()  # how `groups` were formed (not part of the fingerprint: the groups are)

    def frame(self, i: int) -> int | None:
        return None if self.frames is None else self.frames[i]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def positive_index(self) -> int:
        return self.classes.index(self.positive)

    @property
    def binary_labels(self) -> np.ndarray:
        """1 for the positive class, 0 otherwise."""
        return (self.labels == self.positive_index).astype(np.int64)

    def fingerprint(self) -> str:
        """sha256 over every sample's id, label, group and file bytes.

        Two folders with the same content have the same fingerprint wherever they
        live; one changed pixel or label gives another one.
        """
        digest = hashlib.sha256()
        hashed: dict[str, str] = {}  # the slices of one volume hash its file once
        for sample_id, path, label, group in zip(self.ids, self.paths, self.labels, self.groups):
            digest.update(f"{sample_id}\0{self.classes[label]}\0{group}\0".encode())
            if path not in hashed:
                hashed[path] = file_sha256(path)
            digest.update(hashed[path].encode())
        digest.update(f"positive={self.positive}".encode())
        return digest.hexdigest()


def infer_group(name: str, group_regex: str | None = None, *, keep: int = 0) -> str:
    """The group (patient, paper page or source figure) of a file name.

    Default: the stem before any '%' (`63%1.jpg` -> `63`), then without the trailing
    slice or crop indices: purely numeric parts after '-', '_' or '.' that follow the
    last part holding a letter (`2020.01.24.919183-p27-132.png` -> `2020.01.24.919183-p27`,
    `...-p6-52%3.png` -> `...-p6`). A name with no letter at all (`1029.png`) keeps its
    stem. `keep`: keep that many of the trailing indices (`IM-0115-0001.jpeg`: 0 -> `IM`,
    1 -> `IM-0115`, 2 or more -> the stem). With a regex, its first capture group, or the
    whole match (`keep` is not used).
    """
    if group_regex is not None:
        match = _compiled(group_regex).search(name)
        if match is None:
            raise DataError(
                f"group_regex {group_regex!r} does not match file name {name!r}; it is searched in the "
                "file name only (not its folder): fix the pattern, or give a manifest with a group column"
            )
        return match.group(1) if match.groups() else match.group(0)
    parts, last_letter = _parts(name)
    if last_letter is None:
        return "".join(parts)
    return "".join(parts[: 2 * min(last_letter + keep, len(parts) // 2) + 1])


def _parts(name: str) -> tuple[list[str], int | None]:
    """The stem before '%' cut as [word, separator, word, ...], and the index (among words) of the last word
    holding a letter (None: no letter)."""
    parts = _SEPARATORS.split(Path(name).stem.split("%", 1)[0])
    with_letter = [i for i, word in enumerate(parts[0::2]) if _LETTER.search(word)]
    return parts, (with_letter[-1] if with_letter else None)


def _trailing_indices(name: str) -> int:
    """How many trailing indices the default reading drops from `name` (0: its group is its stem)."""
    parts, last_letter = _parts(name)
    return 0 if last_letter is None else len(parts) // 2 - last_letter


def _reading(keep: int, finest: int) -> str:
    return "stem" if keep == finest and keep > 0 else "name" if keep == 0 else f"name+{keep}"


_READINGS = {
    "name": "the file name without its '%N' crop suffix and the trailing numeric slice or crop indices after "
            "its last part holding a letter",
    "stem": "the file name before any '%' (one group per file; crops '63%1', '63%2' of one figure stay together)",
}


def _default_groups(names: list[str], labels: list[str]) -> tuple[list[str], Grouping]:
    """The coarsest reading of the file names under which no class is swallowed by one group.

    Readings, coarsest first: "name" (infer_group), then keeping 1, 2, ... more trailing indices, up to
    the stem before '%'. A class is swallowed when one group holds over SWALLOW_SHARE of it and it has
    SWALLOW_MIN_IMAGES images or more (trainers.data.groups.swallowed). One reading for the whole dataset.
    """
    finest = max((_trailing_indices(n) for n in names), default=0)
    rejected: list[tuple[str, Swallowed]] = []
    for keep in range(finest + 1):
        groups = [infer_group(n, keep=keep) for n in names]
        worst = swallowed(labels, groups)
        rule = _reading(keep, finest)
        if worst is None or keep == finest:
            break
        rejected.append((rule, worst))
    example = next((n for n in names if _trailing_indices(n) > keep), names[0])
    description = _READINGS.get(rule) or (
        f"the file name without its '%N' crop suffix, keeping {keep} more trailing index(es) than 'name' "
        f"({example!r} -> {infer_group(example, keep=keep)!r})")
    if worst is None and not rejected:
        return groups, Grouping(rule, description, f"no group holds over {SWALLOW_SHARE:.0%} of a class of "
                                                   f"{SWALLOW_MIN_IMAGES}+ images")
    reasons = [f"under the coarser reading {coarser!r}, {why.sentence()}" for coarser, why in rejected[-1:]]
    if worst is not None:
        reasons.append(f"even under {rule!r}, the finest reading, {worst.sentence()}: these groups are not "
                       "patients, and splits, folds and intervals on them are not to be trusted")
    reason = "; ".join(reasons)
    log.warning("groups: file names read as %r (%s) because %s. If one patient or figure really holds that many "
                "images, or the names carry the patient elsewhere, %s", rule, description, reason, _REMEDY)
    return groups, Grouping(rule, description, reason)


@functools.lru_cache(maxsize=8)
def _compiled(group_regex: str) -> re.Pattern[str]:
    try:
        return re.compile(group_regex)
    except re.error as e:
        raise DataError(f"group_regex {group_regex!r} is not a valid regular expression: {e}") from e


def default_positive(classes: tuple[str, ...]) -> str:
    # CT_NonCOVID: look past a modality prefix like "CT_" too
    candidates = [
        c for c in classes if not any(part.lower().startswith(_NEGATIVE_PREFIXES) for part in (c, c.split("_", 1)[-1]))
    ]
    if len(candidates) != 1:
        raise DataError(
            f"cannot tell the positive class among {list(classes)}; "
            "name it with --positive (or 'positive:' in the config)"
        )
    return candidates[0]


def discover(
    *,
    data: str | Path | None = None,
    manifest: str | Path | None = None,
    positive: str | None = None,
    group_regex: str | None = None,
    slices: str = "middle",
    skip_bad: bool = False,
) -> Dataset:
    """DICOM / NIfTI files become one sample per kept slice (`slices`, trainers.data.medical), grouped
    by patient; a DICOM or NIfTI file that cannot be used is an error, or with `skip_bad` left
    out and listed in Dataset.skipped."""
    if (data is None) == (manifest is None):
        raise DataError("give a dataset: either a folder (--data DIR) or a CSV manifest (manifest: FILE)")
    rows = _scan_folder(Path(data)) if data is not None else _read_manifest(Path(manifest))
    listed = {path for _, path, _, group in rows if group}  # files grouped by the manifest's group column
    rows, frames, skipped = _expand_medical(rows, slices, skip_bad)
    root = str(Path(data if data is not None else Path(manifest).parent).resolve())
    classes = tuple(sorted({label for _, _, label, _ in rows}))
    if len(classes) < 2:
        raise DataError(
            f"{root} holds one class only ({classes[0] if classes else 'none'}); "
            "a classifier needs at least two class folders with images"
        )
    if len(classes) > 2:
        raise DataError(
            f"{root} holds {len(classes)} classes {list(classes)}; lungsweep trains binary "
            "classifiers: keep two class folders"
        )
    if positive is None:
        positive = default_positive(classes)
    elif positive not in classes:
        raise DataError(f"positive class {positive!r} is not one of the classes {list(classes)}")
    ids = tuple(sample_id for sample_id, _, _, _ in rows)
    groups, grouping = _groups(rows, group_regex, listed)
    return Dataset(
        root=root,
        ids=ids,
        paths=tuple(path for _, path, _, _ in rows),
        labels=np.asarray([classes.index(label) for _, _, label, _ in rows], dtype=np.int64),
        groups=tuple(groups),
        classes=classes,
        positive=positive,
        frames=frames,
        skipped=skipped,
        grouping=grouping,
    )


def _groups(rows: list, group_regex: str | None, listed: set[str]) -> tuple[list[str], Grouping]:
    """Each row's group, and how they were formed: a given group (manifest column, DICOM header) wins,
    then group_regex, then the coarsest reading of the file names that swallows no class."""
    named = [i for i, (_, _, _, group) in enumerate(rows) if not group]
    groups = [group for _, _, _, group in rows]
    from_manifest = sum(1 for _, path, _, _ in rows if path in listed)
    from_header = len(rows) - len(named) - from_manifest
    sources = [f"{n} image(s) grouped by the {source}" for n, source in (
        (from_manifest, "manifest's group column"), (from_header, "DICOM PatientID (a NIfTI volume: itself)")) if n]
    if not named:
        rule = "manifest" if from_manifest else "dicom"
        return groups, Grouping(rule, f"groups given: {', '.join(sources)}", "a given group always wins")
    names = [Path(rows[i][0]).name for i in named]
    if group_regex is not None:
        found = [infer_group(name, group_regex) for name in names]
        grouping = Grouping("group_regex", f"the first capture group (or the whole match) of {group_regex!r} "
                                           "on each file name", "group_regex was given")
    else:
        found, grouping = _default_groups(names, [rows[i][2] for i in named])
    for i, group in zip(named, found):
        groups[i] = group
    if sources:  # a manifest with some group cells empty, or DICOM files beside PNGs
        grouping = Grouping(grouping.rule, f"{grouping.description}; {', '.join(sources)}", grouping.reason)
    return groups, grouping


def _expand_medical(rows: list, slices: str, skip_bad: bool) -> tuple[list, tuple | None, tuple]:
    """Rows of DICOM / NIfTI files -> one row per kept slice; PNG/JPEG rows pass unchanged."""
    medical = [i for i, (_, path, _, _) in enumerate(rows) if _is_medical(path)]
    if not medical:
        return rows, None, ()
    samples, bad = expand([(rows[i][0], rows[i][1]) for i in medical], slices)
    if bad and not skip_bad:
        raise BadImageError(*bad[0])
    by_file: dict[str, list] = {}
    for sample in samples:
        by_file.setdefault(sample.path, []).append(sample)
    out, frames = [], []
    for rel, path, label, group in rows:
        if not _is_medical(path):
            out.append((rel, path, label, group))
            frames.append(None)
            continue
        for sample in by_file.get(path, []):  # a manifest's group column overrides the file's own
            out.append((sample.key, path, label, group or sample.group))
            frames.append(sample.frame)
    by_path = {path: rel for rel, path, _, _ in rows}
    skipped = tuple((by_path.get(path, path), reason) for path, reason in bad)
    for sample_id, reason in skipped:
        log.warning("skipped bad file %s: %s", sample_id, reason)
    return out, tuple(frames), skipped


def _is_medical(path: str | Path) -> bool:
    return Path(path).suffix.lower() not in IMAGE_SUFFIXES and is_medical(path)


def _scan_folder(root: Path) -> list[tuple[str, str, str, str | None]]:
    if not root.exists():
        raise DataError(f"data folder {root} does not exist; give a folder with one sub-folder per class "
                        "(a relative path is read from where you run the command)")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a folder; give a folder with one sub-folder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"data folder {root} has no class sub-folders (expected e.g. CT_COVID/ and CT_NonCOVID/)")
    rows = []
    for class_dir in class_dirs:
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or _is_medical(p))
        )
        if not files:
            raise DataError(
                f"class folder {class_dir} holds no PNG or JPEG images (nor DICOM or NIfTI files); "
                "add images or remove the folder"
            )
        for f in files:
            rows.append((f.relative_to(root).as_posix(), str(f), class_dir.name, None))
    return rows


def _read_manifest(manifest: Path) -> list[tuple[str, str, str, str | None]]:
    if not manifest.is_file():
        raise DataError(f"manifest {manifest} does not exist")
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise DataError(f"manifest {manifest} lacks column(s) {missing}; expected path,label[,group]")
        rows = []
        for line, row in enumerate(reader, start=2):
            rel = (row.get("path") or "").strip()
            label = (row.get("label") or "").strip()
            if not rel or not label:
                raise DataError(f"manifest {manifest} line {line}: empty path or label")
            path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
            if not path.is_file():
                raise DataError(f"manifest {manifest} line {line}: image {path} does not exist")
            group = (row.get("group") or "").strip() or None
            rows.append((rel, str(path), label, group))
    if not rows:
        raise DataError(f"manifest {manifest} lists no images")
    return rows


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
