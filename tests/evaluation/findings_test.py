"""Tests for the paper-findings checks on sweep rows."""
from magnets_tf.evaluation import findings, sweep


def _rows(fids, gflops=None):
    """Sweep-CSV-like rows (strings, as csv.DictReader gives) for {key: fid}."""
    gflops = gflops or {}
    rows = []
    for key, fid in fids.items():
        schedule, cache, refresh = key.split("|")
        family = "scale_down" if key.startswith(("1:6,8:6", "8:6,1:6")) else "cache"
        rows.append({"key": key, "family": family, "schedule": schedule,
                     "cache": cache.split("=")[1], "refresh": refresh.split("=")[1],
                     "fid": str(fid), "gflops_exact": str(gflops.get(key, 1.0))})
    return rows


GOOD = {
    "1:12|cache=0|refresh=model_change": 10.0, "2:12|cache=0|refresh=model_change": 12.0,
    "4:12|cache=0|refresh=model_change": 15.0, "8:12|cache=0|refresh=model_change": 20.0,
    "8:3,4:3,2:3,1:3|cache=1|refresh=model_change": 11.0,
    "8:3,4:3,2:3,1:3|cache=1|refresh=never": 13.0,
    "8:6,1:6|cache=1|refresh=model_change": 12.0,
    "1:6,8:6|cache=1|refresh=model_change": 18.0,
}
GFLOPS = {"1:12|cache=0|refresh=model_change": 1.0,
          "8:3,4:3,2:3,1:3|cache=1|refresh=model_change": 0.38,
          "8:3,4:3,2:3,1:3|cache=1|refresh=never": 0.33}


def test_every_finding_reproduced_on_paper_like_numbers():
    gt_only = _rows({"2:12|cache=0|refresh=model_change": 13.0,
                     "4:12|cache=0|refresh=model_change": 17.0,
                     "8:12|cache=0|refresh=model_change": 25.0})
    result = findings.all_findings(_rows(GOOD, GFLOPS), gt_only)
    assert [f.verdict for f in result] == ["reproduced"] * 5
    table = findings.markdown_table(result, n=2000)
    assert "n = 2000" in table and table.count("**reproduced**") == 5


def test_failures_are_reported_not_hidden():
    bad = dict(GOOD)
    bad["4:12|cache=0|refresh=model_change"] = 25.0  # p=4 worse than p=8
    bad["8:3,4:3,2:3,1:3|cache=1|refresh=model_change"] = 12.0  # 1.2x the full model's FID
    bad["1:6,8:6|cache=1|refresh=model_change"] = 11.0  # scaling down wins
    result = findings.all_findings(_rows(bad, GFLOPS))
    assert [f.reproduced for f in result] == [False, False, True, False, None]
    assert "x1.20" in result[1].measured and "0/1 pairs" in result[3].measured
    assert "gt_only" in result[4].measured


def test_scaling_pairs_are_found_in_any_family():
    """The default schedule is listed under `cache`; its mirror under `scale_down`."""
    rows = _rows(GOOD, GFLOPS)
    rows.append({"key": "1:3,2:3,4:3,8:3|cache=1|refresh=model_change", "family": "scale_down",
                 "schedule": "1:3,2:3,4:3,8:3", "cache": "1", "refresh": "model_change",
                 "fid": "30.0", "gflops_exact": "0.37"})
    result = findings.scaling_up_beats_down(rows)
    assert result.reproduced and "2/2 pairs" in result.measured
    assert "8:3,4:3,2:3,1:3 FID 11.00 vs 1:3,2:3,4:3,8:3 FID 30.00" in result.measured
    # A sampling-family row of the same schedule is not paired with the plain mirror.
    rows.append({"key": "8:6,1:6|cache=1|refresh=model_change|guidance_scale=4",
                 "family": "sampling", "schedule": "8:6,1:6", "cache": "1",
                 "refresh": "model_change", "sampling": "guidance_scale=4", "fid": "40.0",
                 "gflops_exact": "0.5"})
    assert "2/2 pairs" in findings.scaling_up_beats_down(rows).measured


def test_expensive_refresh_is_not_little():
    costly = dict(GFLOPS)
    costly["8:3,4:3,2:3,1:3|cache=1|refresh=model_change"] = 0.5  # +52% over no refresh
    assert findings.refresh_helps(_rows(GOOD, costly)).reproduced is False


def test_missing_points_are_not_measured():
    result = findings.all_findings([])
    assert all(f.reproduced is None and "missing" in f.measured for f in result)


def test_sweep_families_cover_the_findings():
    """The sweep's nested, cache, baseline and scale_down families hold every needed key."""
    points = sweep.build_points(["baseline", "nested", "cache", "scale_down"], total=12)
    rows = [{"key": p.key, "family": p.family, "schedule": p.schedule_text,
             "cache": str(int(p.use_cache)), "refresh": p.refresh, "fid": "1.0",
             "gflops_exact": "1.0"} for p in points]
    result = findings.all_findings(rows, rows)
    assert all(f.reproduced is not None for f in result)
