"""tools/quickstart.py: resumable stages, clear failures, the report table; slow: --quick run."""
import importlib.util
import json
import sys

import pytest

from tests.tool_runner import ROOT, run_tool

_spec = importlib.util.spec_from_file_location("quickstart", ROOT / "tools" / "quickstart.py")
quickstart = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quickstart)


def test_stage_runs_once_then_resumes(tmp_path, capsys):
    counter = tmp_path / "count"
    argv = [sys.executable, "-c",
            f"import pathlib; p = pathlib.Path({str(counter)!r}); "
            f"p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1'); print('ok')"]
    quickstart.run_stage(tmp_path, "demo", argv)
    quickstart.run_stage(tmp_path, "demo", argv)
    assert counter.read_text() == "1"
    assert "done earlier, skipped" in capsys.readouterr().out
    log = (tmp_path / "logs" / "demo.log").read_text().splitlines()
    assert log[0].startswith("== ") and log[1:] == ["ok"]


def test_failed_stage_names_itself_and_leaves_no_marker(tmp_path):
    argv = [sys.executable, "-c", "import sys; print('bad input'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"stage broken failed \(exit 3\)[\s\S]*bad input"):
        quickstart.run_stage(tmp_path, "broken", argv)
    assert not (tmp_path / "stages" / "broken.done").exists()


def test_rerun_of_a_failed_stage_keeps_the_first_attempts_log(tmp_path):
    quickstart.run_stage(tmp_path, "flaky", [sys.executable, "-c", "print('ok')"])
    (tmp_path / "stages" / "flaky.done").unlink()  # as if the first attempt was interrupted
    with pytest.raises(RuntimeError, match="stage flaky failed"):
        quickstart.run_stage(tmp_path, "flaky", [sys.executable, "-c", "exit('second')"])
    log = (tmp_path / "logs" / "flaky.log").read_text()
    assert log.count("== ") == 2 and "ok" in log and "second" in log


def test_report_table(tmp_path):
    quickstart.FLAGS.mark_as_parsed()
    for name, fid, acc, gflops in (("magnets", 20.0, 0.8, 1.0), ("maskgit", 18.0, 0.85, 2.6)):
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "metrics.json").write_text(json.dumps(
            dict(fid=fid, class_accuracy=acc, gflops_exact=gflops, n=100, n_reference=200)))
    (tmp_path / "benchmark.json").write_text(json.dumps(
        dict(speedup=2.1, baseline=dict(images_per_s=1.0), magnets=dict(images_per_s=2.1))))
    (tmp_path / "export" / "3").mkdir(parents=True)
    report = quickstart.write_report(tmp_path, "fashion_mnist", quickstart.QUICK).read_text()
    assert "| MaskGIT++ (full model, no cache) | 18.00 | n/a | 85.0% | 2.600 | 1.0 |" in report
    assert "| MaGNeTS (8:3,4:3,2:3,1:3, cache + refresh) | 20.00 | n/a | 80.0% | 1.000 | 2.1 |" in report
    assert "Exact GFLOPs ratio 2.60x; measured speedup 2.10x" in report
    assert str(tmp_path / "export" / "3") in report


@pytest.mark.slow  # minutes: every stage of the real pipeline with tiny step counts
def test_quick_run_end_to_end(tmp_path):
    out = run_tool("quickstart", "--quick", f"--output_dir={tmp_path}", timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = (tmp_path / "report.md").read_text()
    assert "MaGNeTS" in report and (tmp_path / "samples_magnets.png").exists()
    assert any((tmp_path / "export").glob("[0-9]*/saved_model.pb"))
