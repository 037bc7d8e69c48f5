"""Where a sweep's own files live: a local folder, or a URI (s3://, gs://, file://) read through pyarrow.fs.

Tune already keeps its trials and state at either; these few helpers let the sweep
record and the results tables follow it. Local writes stay atomic (trainers.atomic);
an object store's writes are whole-object by nature. Ray-free.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, IO

import pyarrow.fs

from trainers.atomic import atomic_file, atomic_write_text
from trainers.errors import LungsweepError

__all__ = ["StorageError", "not_shared", "is_uri", "join", "basename", "exists", "list_files", "read_bytes",
           "write_bytes", "write_text", "write_with", "mirror_files", "fetch_folder"]


class StorageError(LungsweepError):
    """The run folder is not reachable from every node of the cluster."""


def not_shared(run_dir: str | Path, where: str) -> StorageError:
    return StorageError(
        f"the run folder {run_dir} is not visible from {where}: a multi-node sweep needs shared "
        "storage. Put it on a filesystem every node mounts (storage: /shared/path in sweep.yaml) "
        "or in the cloud (storage: s3://bucket/sweeps)"
    )


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def join(base: str | Path, *names: str) -> str | Path:
    """base/name/...: a Path for a local folder, a string for a URI (Path would fold its '//').

    A URI's query (`s3://bucket/sweeps?endpoint_override=minio:9000&scheme=http`, how pyarrow
    reaches an S3-compatible server) stays at the end, where pyarrow reads it.
    """
    if not is_uri(base):
        return Path(base).joinpath(*names)
    path, sep, query = str(base).partition("?")
    return "/".join([path.rstrip("/"), *names]) + sep + query


def basename(location: str | Path) -> str:
    """The last name of a folder or URI, without a URI's query."""
    return str(location).partition("?")[0].rstrip("/").rsplit("/", 1)[-1] if is_uri(location) else Path(location).name


def _fs(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    return pyarrow.fs.FileSystem.from_uri(uri)


def exists(location: str | Path) -> bool:
    if not is_uri(location):
        return Path(location).exists()
    fs, path = _fs(str(location))
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def list_files(location: str | Path) -> list[str]:
    """The names of the files (not folders) directly in a folder or URI; none when it is not there."""
    if not is_uri(location):
        folder = Path(location)
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    fs, path = _fs(str(location))
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pyarrow.fs.FileType.File)


def read_bytes(location: str | Path) -> bytes | None:
    """The file's bytes, or None when it is not there."""
    if not is_uri(location):
        path = Path(location)
        return path.read_bytes() if path.is_file() else None
    fs, path = _fs(str(location))
    try:
        with fs.open_input_stream(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_bytes(location: str | Path, data: bytes) -> None:
    if not is_uri(location):
        with atomic_file(location) as tmp:
            tmp.write_bytes(data)
        return
    fs, path = _fs(str(location))
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)


def write_text(location: str | Path, text: str) -> None:
    if is_uri(location):
        write_bytes(location, text.encode())
    else:
        atomic_write_text(location, text)


def write_with(location: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """write(binary file) into `location`, atomically where it is local."""
    if not is_uri(location):
        with atomic_file(location) as tmp, open(tmp, "wb") as f:
            write(f)
        return
    fs, path = _fs(str(location))
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        write(f)


def mirror_files(uri: str, dest: Path, *, skip: Callable[[str], bool]) -> int:
    """Copy every file under `uri` into `dest` (same relative paths) whose relative path `skip` refuses.

    Each file lands whole (atomic_file), so a reader never sees half of one. A file already
    mirrored with the same size and no newer change is not fetched again, so reading a big
    sweep a second time costs a listing. Returns the count copied.
    """
    fs, root = _fs(uri)
    root = root.rstrip("/")
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
    copied = 0
    for info in infos:
        relative = info.path[len(root):].lstrip("/")
        if info.type != pyarrow.fs.FileType.File or skip(relative) or _mirrored(info, dest / relative):
            continue
        with fs.open_input_stream(info.path) as f, atomic_file(dest / relative) as tmp:
            tmp.write_bytes(f.read())
        copied += 1
    return copied


def _mirrored(info: pyarrow.fs.FileInfo, local: Path) -> bool:
    try:
        stat = local.stat()
    except FileNotFoundError:
        return False
    changed = info.mtime_ns is None or info.mtime_ns > stat.st_mtime_ns
    return stat.st_size == info.size and not changed


def fetch_folder(uri: str, dest: Path) -> bool:
    """Copy the folder at `uri` to `dest` once (whole, or not at all); False when `uri` holds nothing."""
    if dest.is_dir():
        return True
    fs, path = _fs(uri)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
        return False
    partial = dest.with_name(f".{dest.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)  # a fetch that was interrupted
    partial.mkdir(parents=True)
    pyarrow.fs.copy_files(path, str(partial), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem())
    partial.rename(dest)
    return True
