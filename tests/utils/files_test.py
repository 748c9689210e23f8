"""Atomic writes: complete files or none, no debris, the old file kept on failure."""
import errno
import json
import os
import socket

import numpy as np
import pytest

from magnets_tf.utils import files


def test_writers_create_directories_and_leave_no_temporary_files(tmp_path):
    files.write_text(tmp_path / "a" / "note.txt", "hello")
    files.write_json(tmp_path / "a" / "value.json", {"x": [1, 2]})
    files.write_npy(tmp_path / "a" / "array.npy", np.arange(3))
    assert (tmp_path / "a" / "note.txt").read_text() == "hello"
    assert json.loads((tmp_path / "a" / "value.json").read_text()) == {"x": [1, 2]}
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "array.npy"), np.arange(3))
    assert sorted(os.listdir(tmp_path / "a")) == ["array.npy", "note.txt", "value.json"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "weights.bin"
    files.write_bytes(target, b"old")

    def fail_halfway(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(target, fail_halfway)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["weights.bin"]


def test_temporary_files_are_hidden_and_marked(tmp_path):
    seen = []
    files.atomic_write(tmp_path / "x.csv", lambda tmp: (seen.append(tmp), open(tmp, "w").close()),
                       suffix=".csv")
    name = os.path.basename(seen[0])
    assert name.startswith(".x.csv" + files.TEMP_MARKER) and name.endswith(".csv")


def test_output_checks_name_the_setting_and_the_problem(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    with pytest.raises(files.OutputPathError, match=rf"--model_dir {a_file} is a file"):
        files.check_writable_dir(str(a_file), "--model_dir")
    with pytest.raises(files.OutputPathError, match=rf"is inside {a_file}, a file"):
        files.check_writable_dir(str(a_file / "sub"), "--model_dir")
    with pytest.raises(files.OutputPathError, match="is a directory: give a file path"):
        files.check_output_file(str(tmp_path), "--output")
    with pytest.raises(files.OutputPathError, match=rf"--output {a_file}/x.png is inside"):
        files.check_output_file(str(a_file / "x.png"), "--output")
    with pytest.raises(files.OutputPathError, match="--output is empty"):
        files.check_output_file("", "--output")
    assert files.check_writable_dir(str(tmp_path / "new" / "dir")) == str(tmp_path / "new" / "dir")
    assert os.listdir(tmp_path / "new" / "dir") == []  # The probe file is gone.
    assert files.check_output_file("gs://bucket/x.png") == "gs://bucket/x.png"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_unwritable_directory_is_reported_before_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(files.OutputPathError, match="permission denied"):
            files.check_writable_dir(str(locked), "--output_dir")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("code, text", [
    (errno.ENOSPC, "no space left on the device of /d/f"),
    (errno.EROFS, "/d/f is on a read-only file system"),
    (errno.EEXIST, "/d/f already exists"),
    (errno.ENOTDIR, "a part of this path is a file"),
])
def test_os_errors_are_described_in_one_sentence(code, text):
    assert text in files.describe_os_error(OSError(code, os.strerror(code), "/d/f"))


def test_sweep_removes_debris_of_killed_writes_only(tmp_path):
    keep = [tmp_path / "weights.h5", tmp_path / "checkpoints" / "ckpt-3.index",
            tmp_path / f".x.tmp-{files.owner_tag()}-abc"]  # The last: a live writer's.
    debris = [tmp_path / ".transformer.weights.h5.tmp-k2j3.weights.h5",
              tmp_path / "checkpoints" / "ckpt-4_temp" / "part",
              tmp_path / "checkpoints" / "ckpt-5_temp_0a1b" / "part",
              tmp_path / "export" / f".tmp-export-pid999999999@{socket.gethostname()}-x"
              / "saved_model.pb",
              tmp_path / "export" / ".tmp-export-q8" / "saved_model.pb"]
    for path in keep + debris:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    messages = []
    removed = files.sweep_debris(str(tmp_path), log=messages.append)
    assert all(path.exists() for path in keep)
    assert not any(path.exists() for path in debris)
    assert len(removed) == len(messages) == 5
    assert all("removed debris of an interrupted write" in m for m in messages)
    assert files.sweep_debris(str(tmp_path / "missing")) == []


def test_owner_tags_tell_live_writers():
    assert files.written_by_live_process(f".tmp-export-{files.owner_tag()}-abc")
    assert not files.written_by_live_process(
        f".tmp-export-pid999999999@{socket.gethostname()}-abc")
    assert files.written_by_live_process(".tmp-export-pid1@otherhost-abc")  # Cannot check.
    assert not files.written_by_live_process(".x.tmp-abc")


def test_a_write_failing_half_way_names_the_target(tmp_path):
    def full_disk(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as caught:
        files.atomic_write(tmp_path / "transformer.weights.h5", full_disk)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(tmp_path / "transformer.weights.h5")
    assert os.listdir(tmp_path) == []
