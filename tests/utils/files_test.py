"""Atomic writes: complete files or none, no debris, the old file kept on failure."""
import json
import os

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
