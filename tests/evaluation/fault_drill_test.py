"""The fault drill's parts: error-line checks, content snapshots (data_lost), byte faults,
the report, a fast real fault; the whole drill is a slow test."""
import os
import subprocess

import pytest

from magnets_tf.evaluation import fault_drill
from magnets_tf.evaluation.fault_drill import Outcome


def _result(code, stderr):
    return subprocess.CompletedProcess(["tool"], code, stdout="", stderr=stderr)


def test_one_clear_error_needs_code_single_line_match_and_no_traceback():
    good = _result(1, "W some warning\nerror: model_dir /x is a file\n")
    assert fault_drill.one_clear_error(good, (1,), "is a file") == (
        True, "error: model_dir /x is a file")
    assert not fault_drill.one_clear_error(good, (2,), "is a file")[0]
    assert not fault_drill.one_clear_error(good, (1,), "read-only")[0]
    two = _result(1, "error: a\nerror: b is a file\n")
    assert not fault_drill.one_clear_error(two, (1,), "is a file")[0]
    traceback = _result(1, "Traceback (most recent call last):\nerror: is a file\n")
    assert not fault_drill.one_clear_error(traceback, (1,), "is a file")[0]
    crash = _result(-11, "Fatal Python error: Segmentation fault\n")
    assert fault_drill.one_clear_error(crash, (1,), "x") == (
        False, "Fatal Python error: Segmentation fault")


def test_data_lost_counts_changed_or_deleted_files_not_moved_ones(tmp_path):
    for name in ("a.bin", "checkpoints/ckpt-1.index", "checkpoints/ckpt-2.index",
                 "checkpoints/checkpoint", "train/events.out.tfevents.1.h", "run.lock",
                 "config.gin", "events.out.tfevents.2.h"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    before = fault_drill.snapshot(str(tmp_path))
    assert sorted(before) == ["a.bin", "checkpoints/ckpt-1.index", "checkpoints/ckpt-2.index",
                              "config.gin"]
    (tmp_path / "checkpoints" / "corrupt").mkdir()
    os.replace(tmp_path / "checkpoints" / "ckpt-2.index",
               tmp_path / "checkpoints" / "corrupt" / "ckpt-2.index")
    (tmp_path / "train" / "events.out.tfevents.1.h").write_text("rewritten")
    (tmp_path / "config_history").mkdir()  # An archived copy counts as kept.
    os.replace(tmp_path / "config.gin", tmp_path / "config_history" / "config-step2.gin")
    (tmp_path / "config.gin").write_text("new settings")
    assert fault_drill.count_lost(before, str(tmp_path)) == 0
    (tmp_path / "a.bin").write_text("changed")
    os.remove(tmp_path / "checkpoints" / "ckpt-1.index")
    assert fault_drill.count_lost(before, str(tmp_path)) == 2
    assert fault_drill.count_lost(before, str(tmp_path), only="checkpoints") == 1


def test_byte_faults_keep_or_halve_the_size(tmp_path):
    path = tmp_path / "shard"
    path.write_bytes(bytes(range(100)))
    fault_drill.flip_bytes(str(path), 40)
    data = path.read_bytes()
    assert len(data) == 100 and sum(a != b for a, b in zip(data, range(100))) == 40
    fault_drill.truncate_half(str(path))
    assert path.stat().st_size == 50


def test_report_table_and_last_line():
    outcomes = [Outcome("lr 1e30", "diverged", 1, "error: diverged", True),
                Outcome("disk full", "no space", observed="skipped: not root", survived=None),
                Outcome("shard", "named", 1, "error: x", False, data_lost=2)]
    report = fault_drill.format_report(outcomes)
    lines = report.splitlines()
    assert lines[0].startswith("fault") and set(lines[1]) == {"-"}
    assert "| skipped  |" in report and "| NO       |" in report
    assert lines[-1] == "faults=2 survived=1 data_lost=2 skipped=1"
    assert not fault_drill.passed(outcomes)
    assert fault_drill.passed(outcomes[:2])


def test_output_path_faults_run_for_real_without_the_base_model(tmp_path):
    outcomes = fault_drill.Drill(str(tmp_path), log=lambda message: None).run_all(
        ["model_dir is a file"])
    assert [(o.fault, o.survived, o.code) for o in outcomes] == [
        ("model_dir is a file", True, 1)]
    assert "is a file" in outcomes[0].observed
    assert not os.path.exists(tmp_path / "base")  # Not trained: this fault needs none.


@pytest.mark.slow
def test_the_whole_drill_survives_every_fault(tmp_path):
    outcomes = fault_drill.Drill(str(tmp_path)).run_all()
    report = fault_drill.format_report(outcomes)
    assert fault_drill.passed(outcomes), report
    ran = [o for o in outcomes if o.survived is not None]
    assert report.splitlines()[-1].startswith(
        f"faults={len(ran)} survived={len(ran)} data_lost=0")
