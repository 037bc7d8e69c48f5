"""Tune's snapshot upload is atomic, and a torn snapshot is named before Tune can start a sweep over."""
from __future__ import annotations

import json
import os
import pickle
import stat

import pyarrow.fs
import pytest

from search import snapshot
from search.snapshot import SnapshotError, check_before_resume, upload_whole

SESSION = "2026-12-01_10-00-00"


def write_snapshot(folder, trial_ids, *, version):
    """A staging folder as Tune leaves it: trial files, the experiment state and its companions."""
    for t in trial_ids:
        (folder / f"trial_{t}").mkdir(parents=True, exist_ok=True)
        (folder / f"trial_{t}" / "progress.csv").write_text(f"epoch,version\n1,{version}\n")
    trial_data = [[json.dumps({"trial_id": t, "status": "TERMINATED"}), "{}"] for t in trial_ids]
    (folder / f"experiment_state-{SESSION}.json").write_text(json.dumps({"trial_data": trial_data, "v": version}))
    (folder / f"search_gen_state-{SESSION}.json").write_bytes(pickle.dumps({"counter": len(trial_ids)}))
    (folder / f"searcher-state-{SESSION}.pkl").write_bytes(pickle.dumps({"study": version, "pad": "x" * 5000}))


def contents(folder):
    """The snapshot's files (not the previous experiment state an upload keeps aside as a hidden file)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def test_an_upload_cut_short_leaves_every_file_old_or_new_never_torn(tmp_path, monkeypatch):
    old, new, dest = tmp_path / "old", tmp_path / "new", tmp_path / "dest"
    write_snapshot(old, ["a"], version=1)
    write_snapshot(new, ["a", "b"], version=2)
    fs = pyarrow.fs.LocalFileSystem()
    upload_whole(str(old), fs, str(dest))
    assert contents(dest) == contents(old)

    import shutil
    real_copy, copied = shutil.copyfile, []

    def copy_then_die(src, dst, *a, **k):  # the driver killed while it copies the fourth file
        if len(copied) == 3:
            raise KeyboardInterrupt
        copied.append(src)
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        upload_whole(str(new), fs, str(dest))
    monkeypatch.undo()
    assert contents(dest) == contents(old), "a file was replaced before every file of the upload was written"
    assert not list(dest.rglob("*.upload")), "a staged copy was left behind"

    replaced = []
    monkeypatch.setattr(os, "replace", lambda a, b: (replaced.append(os.path.basename(b)), os.rename(a, b)))
    upload_whole(str(new), fs, str(dest))
    assert contents(dest) == contents(new)
    # trials' files, then the experiment state (its old version kept aside first), then the searcher's state
    assert replaced.pop(2) == f".experiment_state-{SESSION}.json.prev"
    assert replaced[:2] == ["progress.csv"] * 2 and replaced[2].startswith("experiment_state-")
    assert sorted(replaced[3:]) == [f"search_gen_state-{SESSION}.json", f"searcher-state-{SESSION}.pkl"]


def test_uploaded_files_honour_the_umask(tmp_path):
    write_snapshot(tmp_path / "src", ["a"], version=1)
    old = os.umask(0o022)
    try:
        upload_whole(str(tmp_path / "src"), pyarrow.fs.LocalFileSystem(), str(tmp_path / "dest"))
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "dest").rglob("*") if p.is_file()}
    assert modes == {0o644}


def test_tunes_syncer_uploads_through_upload_whole():
    from ray.train._internal.storage import _FilesystemSyncer

    snapshot.install()
    snapshot.install()  # once per process, however often launch runs
    syncer = _FilesystemSyncer(storage_filesystem=pyarrow.fs.LocalFileSystem())
    fn, kwargs = syncer._sync_up_command(local_path="/a", uri="/b")
    assert fn is upload_whole and kwargs["fs_path"] == "/b"


def test_a_whole_snapshot_gives_its_trials(tmp_path):
    write_snapshot(tmp_path, ["a", "b"], version=1)
    assert check_before_resume(tmp_path) == {"a", "b"}
    assert check_before_resume(tmp_path / "nothing-here") == set()


@pytest.mark.parametrize("name", [f"experiment_state-{SESSION}.json", f"search_gen_state-{SESSION}.json",
                                  f"searcher-state-{SESSION}.pkl"])
def test_a_torn_snapshot_file_is_named(tmp_path, name):
    write_snapshot(tmp_path, ["a", "b"], version=1)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SnapshotError, match=rf"{name} was cut off while the driver was killed.*new --out"):
        check_before_resume(tmp_path)


def test_only_the_newest_sessions_snapshot_is_checked(tmp_path):
    write_snapshot(tmp_path, ["a"], version=1)
    (tmp_path / "searcher-state-2026-11-30_09-00-00.pkl").write_bytes(b"\x80\x05torn")  # an older session's
    assert check_before_resume(tmp_path) == {"a"}


def test_a_save_during_the_upload_is_waited_for_never_mixed(tmp_path, monkeypatch):
    import shutil
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_snapshot(src, ["a"], version=1)
    upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    write_snapshot(src, ["a", "b"], version=2)
    real_copy, saves = shutil.copyfile, []

    def copy_while_tune_saves(source, dst, *a, **k):
        if "searcher-state" in str(source) and not saves:  # Tune's next save lands mid-upload
            saves.append(1)
            write_snapshot(src, ["a", "b", "c"], version=3)
        return real_copy(source, dst, *a, **k)

    monkeypatch.setattr(shutil, "copyfile", copy_while_tune_saves)
    upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    snapshot_files = {k: v for k, v in contents(src).items() if "/" not in k}
    assert saves and {k: v for k, v in contents(dest).items() if "/" not in k} == snapshot_files  # all of save 3
    assert check_before_resume(dest) == {"a", "b", "c"}


def test_a_save_still_under_way_keeps_the_previous_snapshot(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_snapshot(src, ["a"], version=1)
    upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    write_snapshot(src, ["a", "b"], version=2)
    searcher = src / f"searcher-state-{SESSION}.pkl"
    before = (src / f"experiment_state-{SESSION}.json").stat().st_mtime_ns
    os.utime(searcher, ns=(before - 10**9, before - 10**9))  # the experiment state written, the searcher's not yet
    upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    assert check_before_resume(dest) == {"a"}, "an experiment state went up without its searcher"
    assert (dest / "trial_b" / "progress.csv").read_text().endswith("1,2\n"), "trials' files still go up"
    assert not list(dest.rglob("*.upload"))


def test_only_trial_files_that_changed_are_copied_again(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_snapshot(src, ["a", "b"], version=1)
    fs = pyarrow.fs.LocalFileSystem()
    upload_whole(str(src), fs, str(dest))
    inodes = {k: (dest / k).stat().st_ino for k in contents(dest)}
    (src / "trial_b" / "progress.csv").write_text("epoch,version\n1,1\n2,1\n")  # trial b reported again
    upload_whole(str(src), fs, str(dest))
    assert contents(dest) == contents(src)
    assert (dest / "trial_a" / "progress.csv").stat().st_ino == inodes["trial_a/progress.csv"]
    assert (dest / "trial_b" / "progress.csv").stat().st_ino != inodes["trial_b/progress.csv"]


def test_refuse_restart_checks_the_expected_trials_once_and_only_when_told():
    from types import SimpleNamespace

    trials = [SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")]
    guard = snapshot.RefuseRestart()
    guard.on_step_begin(0, trials)  # a new sweep: nothing expected
    snapshot.expect_resumed({"a", "b"})
    guard.on_step_begin(0, trials)  # both restored
    snapshot.expect_resumed({"a", "b", "c"})
    with pytest.raises(SnapshotError, match="could not restore 1 of the 3 saved trials"):
        guard.on_step_begin(0, trials)
    guard.on_step_begin(1, [])  # checked once: later steps run as Tune runs them
    snapshot.expect_resumed({"z"})
    snapshot.expect_resumed(set())  # what every launch does first
    guard.on_step_begin(0, trials)


def test_an_upload_keeps_the_experiment_state_it_replaces_until_the_next(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    state = f"experiment_state-{SESSION}.json"
    write_snapshot(src, ["a"], version=1)
    upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    assert not (dest / f".{state}.prev").exists(), "nothing to keep on the first upload"
    first = (dest / state).read_bytes()
    write_snapshot(src, ["a", "b"], version=2)
    upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    assert (dest / f".{state}.prev").read_bytes() == first
    assert snapshot.settle_before_resume(dest) and check_before_resume(dest) == {"a", "b"}


def test_a_kill_between_the_experiment_state_and_its_searcher_puts_the_pair_before_back(tmp_path, monkeypatch):
    src, dest = tmp_path / "src", tmp_path / "dest"
    write_snapshot(src, ["a"], version=1)
    upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    searcher_before = (dest / f"searcher-state-{SESSION}.pkl").read_bytes()
    write_snapshot(src, ["a", "b"], version=2)
    real_replace = os.replace

    def die_after_the_experiment_state(a, b):
        real_replace(a, b)
        if os.path.basename(b).startswith("experiment_state-"):
            raise KeyboardInterrupt  # the driver killed between the two renames

    monkeypatch.setattr(os, "replace", die_after_the_experiment_state)
    with pytest.raises(KeyboardInterrupt):
        upload_whole(str(src), pyarrow.fs.LocalFileSystem(), str(dest))
    monkeypatch.undo()
    assert check_before_resume(dest) == {"a", "b"}, "the new experiment state is in place, its searcher is not"
    assert snapshot.settle_before_resume(dest)
    assert check_before_resume(dest) == {"a"}, "the whole pair from before the kill"
    assert (dest / f"searcher-state-{SESSION}.pkl").read_bytes() == searcher_before


def test_a_new_sessions_experiment_state_without_its_searcher_is_set_aside(tmp_path):
    write_snapshot(tmp_path, ["a"], version=1)
    later = "2026-12-01_11-00-00"  # the next driver's first snapshot, killed before its searcher's state
    (tmp_path / f"experiment_state-{later}.json").write_text(json.dumps({"trial_data": [
        [json.dumps({"trial_id": t, "status": "RUNNING"}), "{}"] for t in ("a", "b")]}))
    assert snapshot.settle_before_resume(tmp_path)
    assert check_before_resume(tmp_path) == {"a"}
    assert (tmp_path / f".experiment_state-{later}.json.half").is_file()


def test_tuner_state_without_a_whole_snapshot_is_nothing_to_resume(tmp_path):
    (tmp_path / "tuner.pkl").write_bytes(b"tuner")  # a sweep killed in its first seconds
    (tmp_path / "trial_a" / "checkpoint_000000").mkdir(parents=True)
    assert not snapshot.settle_before_resume(tmp_path)
    assert not snapshot.settle_before_resume(tmp_path / "nowhere")
    (tmp_path / f"experiment_state-{SESSION}.json").write_text('{"trial_data": []}')  # its searcher's never came
    assert not snapshot.settle_before_resume(tmp_path)
    snapshot.discard_unsaved(tmp_path)
    assert not (tmp_path / "trial_a").exists() and (tmp_path / "tuner.pkl").is_file()
