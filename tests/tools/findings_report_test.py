"""Command-line test of tools/findings_report.py on a written sweep CSV."""
from magnets_tf.evaluation import sweep
from tests.tool_runner import run_tool


def _run(*args):
    return run_tool("findings_report", *args, timeout=300)


def test_report_from_a_sweep_csv(tmp_path):
    points = sweep.build_points(["baseline", "nested", "cache", "scale_down"], total=12)
    fids = {"1:12": 10, "2:12": 11, "4:12": 12, "8:12": 13}
    rows = [{"key": p.key, "family": p.family, "schedule": p.schedule_text, "steps": 12,
             "cache": int(p.use_cache), "refresh": p.refresh, "n": 50,
             "fid": fids.get(p.schedule_text, 10.5 if p.refresh == "model_change" else 14),
             "gflops_exact": 1.0 if not p.use_cache else 0.35} for p in points]
    sweep.write_rows(tmp_path / "sweep.csv", rows)
    out = _run(f"--sweep_csv={tmp_path / 'sweep.csv'}", f"--output={tmp_path / 'f.md'}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == (
        "reproduced=3 not_reproduced=1 not_measured=1")  # up == down FID: not a win
    assert "n = 50" in (tmp_path / "f.md").read_text()


def test_missing_csv_is_a_usage_error(tmp_path):
    out = _run(f"--sweep_csv={tmp_path / 'none.csv'}")
    assert out.returncode != 0 and "no file" in out.stderr
