"""tools/benchmark_training.py as a real subprocess: usage errors and a small real run."""
import json
import subprocess

import pytest

from tests.tool_runner import ROOT, tool_command, tool_env

GIN = ROOT / "gin" / "fashion_mnist" / "magnets_tiny.gin"


def test_missing_gin_file_is_a_usage_error():
    result = subprocess.run(tool_command("benchmark_training"), env=tool_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--gin_file is required" in result.stderr


@pytest.mark.slow
def test_small_run_writes_the_report(tmp_path):
    output = tmp_path / "report.json"
    result = subprocess.run(tool_command(
        "benchmark_training", f"--gin_file={GIN}", "--gin_bindings=build_transformer.num_layers=1",
        "--gin_bindings=train.batch_size=8", "--synthetic_examples=64",
        "--synthetic_grid=2,2", "--synthetic_codebook=16", "--steps=2", "--loop_sizes=1,2",
        "--repeats=1", "--pipeline_batches=2", f"--output={output}"),
        env=tool_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert set(report["steps_per_second"]) == {"1", "2"} and report["synthetic_tokens"]
    assert "steps_per_loop=2:" in result.stdout and "headroom" in result.stdout
