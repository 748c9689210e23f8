"""Tests for sweep points, the resumable CSV and the FID-GFLOPs plot."""
import math

import pytest

from magnets_tf.evaluation import sweep


def test_compositions_cover_every_split_of_the_steps():
    points = sweep.composition_points(total=12, min_steps=1)
    assert len(points) == math.comb(11, 3)  # k_i >= 1 summing to 12
    assert all(p.steps == 12 and [f for f, _ in p.schedule] == [8, 4, 2, 1] for p in points)
    assert len({p.key for p in points}) == len(points)
    with_zeros = sweep.composition_points(total=4, min_steps=0)
    assert len(with_zeros) == math.comb(7, 3)
    assert sweep.SweepPoint("compositions", ((8, 0), (4, 4), (2, 0), (1, 0))).schedule_text == "4:4"
    with pytest.raises(ValueError, match="cannot give"):
        sweep.composition_points(total=3, min_steps=1)


def test_families_and_deduplication():
    points = sweep.build_points(["baseline", "cache", "scaling", "compositions"], total=12)
    keys = [p.key for p in points]
    assert len(keys) == len(set(keys))
    assert points[0].key == "1:12|cache=0|refresh=model_change"
    # The default schedule appears in cache, scaling (k=3) and compositions only once.
    assert keys.count("8:3,4:3,2:3,1:3|cache=1|refresh=model_change") == 1
    # k=3 of the scaling family is the default schedule, already listed by `cache`.
    assert {p.steps for p in points if p.family == "scaling"} == {4, 8, 16, 20, 24}
    cache = [p for p in points if p.family == "cache"]
    assert {(p.use_cache, p.refresh) for p in cache} == {
        (False, "model_change"), (True, "model_change"), (True, "every_step"), (True, "never")}
    assert points[1].plan_kwargs() == dict(model_schedule=((8, 3), (4, 3), (2, 3), (1, 3)),
                                           num_steps=12, use_cache=False, refresh="model_change")
    with pytest.raises(ValueError, match="unknown sweep families"):
        sweep.build_points(["everything"])


def test_nested_and_scale_down_families():
    points = sweep.build_points(["baseline", "nested", "scale_down"], total=12)
    nested = [p.schedule_text for p in points if p.family == "nested"]
    # p=1 alone without cache is the baseline, listed once (under `baseline`).
    assert nested == ["8:12", "4:12", "2:12"]
    assert all(not p.use_cache for p in points if p.family == "nested")
    pairs = [p.schedule_text for p in points if p.family == "scale_down"]
    assert pairs == ["8:3,4:3,2:3,1:3", "1:3,2:3,4:3,8:3", "8:6,1:6", "1:6,8:6",
                     "2:6,1:6", "1:6,2:6"]
    assert all(p.use_cache and p.refresh == "model_change"
               for p in points if p.family == "scale_down")


def _metrics(point):
    return {"fid": 100.0 / point.steps, "n": 8, "n_reference": 20, "precision": 0.5,
            "recall": 0.5, "gflops_exact": float(point.steps), "gflops_paper": 1.0,
            "decode_seconds_per_image": 0.0, "feature_seconds_per_image": 0.0}


def test_interrupt_and_resume_without_recomputing(tmp_path):
    points = sweep.scaling_points((1, 2, 3, 4))
    csv_path = tmp_path / "sweep.csv"
    calls = []

    def interrupted_after_two(point):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(point.key)
        return _metrics(point)

    rows, interrupted = sweep.run_sweep(points, interrupted_after_two, csv_path, progress=False)
    assert interrupted and len(rows) == 2
    assert [r["key"] for r in sweep.read_rows(csv_path)] == calls

    resumed = []
    rows, interrupted = sweep.run_sweep(points, lambda p: resumed.append(p.key) or _metrics(p),
                                        csv_path, progress=False)
    assert not interrupted
    assert resumed == [p.key for p in points[2:]]  # finished points are not recomputed
    saved = sweep.read_rows(csv_path)
    assert [r["key"] for r in saved] == [p.key for p in points]
    assert float(saved[3]["fid"]) == pytest.approx(100.0 / 16)
    assert not [p for p in tmp_path.iterdir() if p.name != "sweep.csv"]  # no temp files left


def test_foreign_csv_is_not_overwritten(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a sweep CSV"):
        sweep.run_sweep(sweep.baseline_points(), _metrics, path, progress=False)
    assert path.read_text() == "a,b\n1,2\n"


def test_plot_writes_png(tmp_path):
    points = sweep.build_points(["baseline", "cache", "scaling"], total=12)
    rows = [dict(_metrics(p), key=p.key, family=p.family, schedule=p.schedule_text,
                 cache=int(p.use_cache), refresh=p.refresh) for p in points]
    path = sweep.plot_sweep(rows, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sampling_family_tunes_the_schedule_and_its_baseline_alike():
    grid = sweep.parse_sampling_grid(["guidance_scale=1,2.5", "temperature_bias=0.5"])
    assert grid == {"guidance_scale": (1.0, 2.5), "temperature_bias": (0.5,)}
    # The baseline takes the schedule's K (12), not `total`.
    points = sweep.build_points(["cache", "sampling"], total=8, sampling_grid=grid)
    sampling = [p for p in points if p.family == "sampling"]
    assert [(p.schedule_text, p.use_cache, p.sampling_text) for p in sampling] == [
        ("8:3,4:3,2:3,1:3", True, "guidance_scale=1;temperature_bias=0.5"),
        ("8:3,4:3,2:3,1:3", True, "guidance_scale=2.5;temperature_bias=0.5"),
        ("1:12", False, "guidance_scale=1;temperature_bias=0.5"),
        ("1:12", False, "guidance_scale=2.5;temperature_bias=0.5")]
    # Their keys never collide with the plain points' (the flags' settings).
    assert len({p.key for p in points}) == len(points) == 4 + 4
    assert sampling[1].key == (
        "8:3,4:3,2:3,1:3|cache=1|refresh=model_change|guidance_scale=2.5|temperature_bias=0.5")
    assert sampling[3].plan_kwargs() == dict(
        model_schedule=((1, 12),), num_steps=12, use_cache=False, refresh="model_change",
        guidance_scale=2.5, temperature_bias=0.5)
    assert sweep.parse_sampling_grid(["guidance_steps=0,4"]) == {"guidance_steps": (0, 4)}


@pytest.mark.parametrize("specs, message", [
    (["guidance_scale"], "expected NAME=V1,V2"),
    (["num_steps=4,8"], "expected NAME=V1,V2"),
    (["guidance_scale=1,x"], "not numbers"),
    (["guidance_scale=1", "guidance_scale=2"], "given twice"),
    (["guidance_steps=1.5"], "counts >= 0"),
])
def test_bad_sampling_grids_name_the_problem(specs, message):
    with pytest.raises(ValueError, match=message):
        sweep.parse_sampling_grid(specs)


def test_sampling_family_needs_a_grid_and_a_grid_needs_the_family():
    with pytest.raises(ValueError, match="needs a grid"):
        sweep.build_points(["sampling"])
    with pytest.raises(ValueError, match="only used by the sampling family"):
        sweep.build_points(["baseline"], sampling_grid={"guidance_scale": (1.0,)})


def test_best_sampling_per_schedule(tmp_path):
    grid = {"guidance_scale": (1.0, 2.0, 4.0)}
    points = sweep.sampling_points(grid, schedule="8:1,1:1")
    fids = {1.0: 30.0, 2.0: 20.0, 4.0: 25.0}

    def metrics(point):
        scale = dict(point.sampling)["guidance_scale"]
        return dict(_metrics(point), fid=fids[scale] + (0 if point.use_cache else 5))

    rows, _ = sweep.run_sweep(points, metrics, tmp_path / "sweep.csv", progress=False)
    rows = sweep.read_rows(tmp_path / "sweep.csv")
    assert rows[0]["sampling"] == "guidance_scale=1"
    best = sweep.best_sampling(rows)
    assert {s: (r["sampling"], float(r["fid"])) for s, r in best.items()} == {
        "8:1,1:1": ("guidance_scale=2", 20.0), "1:2": ("guidance_scale=2", 25.0)}
    sweep.plot_sweep(rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
