"""Tune's experiment snapshot: uploaded whole, and checked whole before a resume.

Tune saves its snapshot (the trials, the searcher, the sample counter, the callbacks'
state) to a staging folder and then copies that folder into the run folder, writing
each file in place. A driver killed mid-copy leaves a file cut short; the resumed
Tune then fails to load it, logs "Restarting experiment" and starts a new sweep with
the old sample counter: the finished trials are dropped, and only the samples not yet
drawn run afresh.

Three guards, all in the driver:
- `install()` routes that copy through `upload_whole` on a local or shared filesystem
  (Ray has no public hook for it: this wraps its private syncer, and warns if that
  moved). Every file is first written beside its target, then renamed into place:
  the trials' files first, then the experiment state, then the searcher's state, so a
  kill leaves each file old or new, never torn. The snapshot's files are taken as one
  save left them (Tune can save again while an upload still runs). Object stores
  (S3, GCS) replace an object whole already; their uploads are Ray's own.
- `check_before_resume()` reads the newest snapshot without unpickling it (JSON, and
  `pickletools` for Tune's pickles): a torn file is named before Tune can start over.
- `expect_resumed()` + `RefuseRestart` (a callback): should Tune's restore fail all
  the same, the resumed sweep stops before its first trial instead of starting anew.

- `settle_before_resume()` puts the last whole snapshot back before Tune reads it. A kill
  between two renames (microseconds) pairs an experiment state with the searcher state
  saved before it: the upload keeps the previous experiment state beside the new one
  (`.NAME.prev`) until the searcher's state is in place, so the pair is put back whole.
  A folder with Tune's tuner.pkl but no whole snapshot (a kill in the sweep's first
  seconds) has nothing to resume: Tune's own restore would then start over with one
  sample (its `_fit_resume` passes no num_samples to `tune.run`), so launch starts the
  sweep anew instead, saying so.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import pickletools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow.fs
from ray.tune import Callback

from trainers import LungsweepError
from trainers.atomic import process_umask

from . import storage
from .record import trial_dirname

__all__ = ["install", "upload_whole", "settle_before_resume", "discard_unsaved", "check_before_resume",
           "expect_resumed", "RefuseRestart", "SnapshotError"]

log = logging.getLogger(__name__)

EXPERIMENT_STATE = "experiment_state-*.json"  # Tune's TuneController.CKPT_FILE_TMPL
# the searcher's and callbacks' state, saved with each experiment state under the same session name;
# all are cloudpickles (search_gen_state's .json suffix notwithstanding)
SEARCHER_STATE = ("search_gen_state-{}.json", "searcher-state-{}.pkl")  # saved after the experiment state
COMPANIONS = (*SEARCHER_STATE, "callback-states-{}.pkl")
_installed = False
_expected: set[str] = set()


class SnapshotError(LungsweepError):
    """Tune's saved state of a sweep cannot be resumed as it stands."""


def install() -> None:
    """Route Tune's snapshot uploads through `upload_whole` (once per process)."""
    global _installed
    if _installed:
        return
    try:
        from ray.train._internal.storage import _FilesystemSyncer, _upload_to_fs_path
    except ImportError as e:  # a Ray release that moved its syncer: resume still checks the snapshot first
        log.warning("cannot make Tune's snapshot upload atomic on this Ray (%s); a crash mid-upload may tear it", e)
        return
    original = _FilesystemSyncer._sync_up_command

    def _sync_up_command(self, local_path: str, uri: str, exclude: list | None = None):
        fn, kwargs = original(self, local_path, uri, exclude)
        return (upload_whole if fn is _upload_to_fs_path else fn), kwargs

    _FilesystemSyncer._sync_up_command = _sync_up_command
    _installed = True


def upload_whole(local_path: str, fs: pyarrow.fs.FileSystem, fs_path: str, exclude: list | None = None) -> None:
    """Copy the folder `local_path` to `fs_path` so that no file there is ever half written."""
    from ray.train._internal.storage import _upload_to_fs_path

    if exclude or not isinstance(fs, pyarrow.fs.LocalFileSystem) or not os.path.isdir(local_path):
        return _upload_to_fs_path(local_path=local_path, fs=fs, fs_path=fs_path, exclude=exclude)
    source, target = Path(local_path), Path(fs_path)
    files = sorted((p.relative_to(source) for p in source.rglob("*") if p.is_file()), key=_commit_order)
    trial_files = [rel for rel in files if len(rel.parts) > 1]
    state = [rel for rel in files if len(rel.parts) == 1]  # the snapshot proper: experiment state + companions
    staged: dict[Path, str] = {}
    try:
        # a trial's files are copied again only when they changed (Ray copies every file of every trial)
        changed = [rel for rel in trial_files if _stamp(source / rel) != _stamp(target / rel)]
        for rel in changed:
            _stage(source, target, rel, staged)
        whole = _stage_snapshot(source, target, state, staged)
        for rel in changed + (state if whole else []):  # in commit order
            if fnmatch.fnmatch(rel.name, EXPERIMENT_STATE):
                _keep_previous(target / rel)  # until its searcher's state follows it: see settle_before_resume
            os.replace(staged.pop(rel), target / rel)
        if not whole:
            log.warning("Tune kept rewriting its snapshot while it was uploaded to %s: the previous one stays "
                        "in place until the next upload", fs_path)
    finally:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)


def _previous(path: Path) -> Path:
    return path.with_name(f".{path.name}.prev")  # matches none of Tune's patterns


def _keep_previous(path: Path) -> None:
    """Keep the whole experiment state at `path` as `.NAME.prev` (a hard link, renamed into place)."""
    if not path.is_file():
        return
    tmp = path.with_name(f".{path.name}.prev.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # a filesystem without hard links
        shutil.copy2(path, tmp)
    os.replace(tmp, _previous(path))


def settle_before_resume(experiment: str | Path) -> bool:
    """Whether `experiment` holds a whole snapshot to resume from, once a half-committed newest one is put back.

    Whole: the newest experiment state with its session's searcher state saved no earlier
    (see `_saved_together`). A kill between the two renames leaves the new experiment state
    beside the old searcher state: its kept previous version is put back. A new session's
    first experiment state without any searcher state of its own is set aside
    (`.NAME.half`), so Tune resumes from the session before. False: no whole snapshot at all.
    """
    if storage.is_uri(experiment):  # an object store replaces each object whole; Ray uploads in its own order
        return _newest_state(storage.list_files(experiment)) is not None
    folder = Path(experiment)
    while True:
        names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        found = _newest_state(names)
        if found is None:
            return False
        name, session = found
        state = [Path(name), *(Path(t.format(session)) for t in SEARCHER_STATE)]
        if _saved_together({rel: _stamp(folder / rel) for rel in state}):
            return True
        if _previous(folder / name).is_file():
            os.replace(_previous(folder / name), folder / name)
            log.warning("%s was saved without its searcher's state (the driver was killed between the two): "
                        "resuming from the snapshot before it", name)
        else:
            os.replace(folder / name, folder / f".{name}.half")
            log.warning("%s has no searcher state of its own (the driver was killed between the two): resuming "
                        "from the session before it", name)


def discard_unsaved(experiment: str | Path) -> None:
    """Remove what a sweep killed before its first whole snapshot left: trial folders no state names."""
    if storage.is_uri(experiment):
        return  # nothing names them: a new sweep's trials get new ids
    for path in Path(experiment).glob(trial_dirname("*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _stage(source: Path, target: Path, rel: Path, staged: dict[Path, str]) -> None:
    """Copy source/rel to a hidden file beside target/rel (the same folder, so the rename is atomic)."""
    dst = target / rel
    if rel not in staged:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, staged[rel] = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".upload")
        os.close(fd)
    st = (source / rel).stat()  # before the copy: a change during it shows as a new stamp next time
    shutil.copyfile(source / rel, staged[rel])
    os.chmod(staged[rel], 0o666 & ~process_umask())
    os.utime(staged[rel], ns=(st.st_atime_ns, st.st_mtime_ns))  # the source's stamp marks it unchanged


def _stage_snapshot(source: Path, target: Path, state: list[Path], staged: dict[Path, str], tries: int = 20) -> bool:
    """Stage the snapshot's files as one save left them; False if Tune kept rewriting them.

    Tune may save its next snapshot into the staging folder while this upload still runs
    (it saves first, then skips the upload if one is in flight). A copy is kept only if no
    file changed while it was taken, and the searcher's state is no older than the
    experiment state (a save writes that first, the searcher's state after it).
    """
    for _ in range(tries):
        before = {rel: _stamp(source / rel) for rel in state}
        if _saved_together(before):
            for rel in state:
                _stage(source, target, rel, staged)
            if {rel: _stamp(source / rel) for rel in state} == before:
                return True
        time.sleep(0.05)
    return False


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def _saved_together(stamps: dict[Path, tuple[int, int] | None]) -> bool:
    """The newest experiment state (this driver's) is no newer than its own session's searcher state."""
    newest = _newest_state(rel.name for rel in stamps)
    if newest is None:
        return True
    name, session = newest
    experiment = stamps[Path(name)]
    searcher = [stamps[Path(t.format(session))] for t in SEARCHER_STATE if Path(t.format(session)) in stamps]
    if experiment is None or None in searcher:
        return False  # replaced right now
    return all(experiment[0] <= s[0] for s in searcher)


def _newest_state(names: Iterable[str]) -> tuple[str, str] | None:
    """(file name, session) of the newest experiment state among `names`: the one Tune resumes from."""
    states = sorted(n for n in names if fnmatch.fnmatch(n, EXPERIMENT_STATE))
    if not states:
        return None
    return states[-1], states[-1][len("experiment_state-"):-len(".json")]


def _commit_order(rel: Path) -> tuple[int, str]:
    """Trials' files, then the experiment state, then the searcher's: see the module docstring."""
    if len(rel.parts) > 1:
        return 0, str(rel)
    return (1 if fnmatch.fnmatch(rel.name, EXPERIMENT_STATE) else 2), str(rel)


def check_before_resume(experiment: str | Path) -> set[str]:
    """The trial ids of the newest snapshot in `experiment` (a folder or URI); a torn snapshot is a SnapshotError."""
    names = storage.list_files(experiment)
    found = _newest_state(names)
    if found is None:
        return set()
    newest, session = found
    try:
        trial_data = json.loads(storage.read_bytes(storage.join(experiment, newest)))["trial_data"]
        ids = {json.loads(trial_json)["trial_id"] for trial_json, _ in trial_data}
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise SnapshotError(_torn(experiment, newest, f"it does not read as Tune's experiment state "
                                                      f"({type(e).__name__})")) from e
    for template in COMPANIONS:
        name = template.format(session)
        if name in names and not _whole_pickle(storage.read_bytes(storage.join(experiment, name)) or b""):
            raise SnapshotError(_torn(experiment, name, "it ends before its last record"))
    return ids


def _whole_pickle(data: bytes) -> bool:
    """Whether `data` is one complete pickle, read opcode by opcode: nothing is built or run."""
    try:
        last = None
        for last, _, _ in pickletools.genops(data):
            pass
    except ValueError:  # truncated mid-opcode, or not a pickle at all
        return False
    return last is not None and last.name == "STOP"


def _torn(experiment: str | Path, name: str, why: str) -> str:
    return (f"cannot resume the sweep in {experiment}: {name} was cut off while the driver was killed ({why}). "
            "Tune would silently start the sweep over. Its finished trials stay in trial_*/; launch again with a new "
            "--out to run a new sweep")


def expect_resumed(trial_ids: set[str]) -> None:
    """Tell `RefuseRestart` which trials the resumed sweep must hold before it runs anything (none: no check)."""
    _expected.clear()
    _expected.update(trial_ids)


class RefuseRestart(Callback):
    """Before a resumed sweep's first step: stop unless Tune restored every trial of the snapshot.

    Tune catches its own restore errors and starts the sweep afresh (logging "Restarting
    experiment"), which would run new trials into the old folder while we print that the
    finished ones are kept. Raising here ends fit() before the first trial starts and
    before Tune writes a snapshot of its own.
    """

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not _expected:
            return
        missing = _expected - {t.trial_id for t in trials}
        expected = len(_expected)
        _expected.clear()  # checked once per driver
        if missing:
            raise SnapshotError(
                f"Tune could not restore {len(missing)} of the {expected} saved trials of this sweep (its error is "
                "logged above) and would have started the sweep over; nothing was run. Launch again with a new --out "
                "to run a new sweep")
