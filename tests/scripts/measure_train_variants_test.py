"""scripts/measure_train_variants.py: variants of one gin config built under their own
bindings and timed side by side; bad variants are usage errors that name them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "measure_train_variants.py"


def _run(*args):
    environment = dict(os.environ, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # ~70 s: two models built, traced and timed
def test_two_variants_are_built_under_their_own_bindings_and_timed(tmp_path):
    output = tmp_path / "variants.json"
    result = _run("--gin_bindings=build_transformer.preset='tiny'",
                  "--gin_bindings=build_transformer.num_layers=1",
                  "--gin_bindings=train.batch_size=2", "--variant=base:",
                  "--variant=wide_mlp_b4:build_transformer.mlp_dim=512;train.batch_size=4",
                  "--rounds=2", "--steps=1", "--warmup=1", "--examples=32",
                  f"--output_json={output}")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    base, wide = report["variants"]["base"], report["variants"]["wide_mlp_b4"]
    assert base["bindings"] == [] and wide["bindings"] == ["build_transformer.mlp_dim=512",
                                                           "train.batch_size=4"]
    assert base["batch_size"] == 2 and wide["batch_size"] == 4  # each variant's own config
    assert wide["parameters"] > base["parameters"]  # built under its own bindings
    assert base["dtype_policy"] == wide["dtype_policy"] == "float32"
    assert base["jit_compile"] is wide["jit_compile"] is False  # "auto" on a CPU
    assert len(base["rounds"]) == len(wide["rounds"]) == 2
    assert "speedup_vs_base" in wide and "speedup_vs_base" not in base
    assert "wide_mlp_b4: built" in result.stdout


def test_bad_variants_are_usage_errors_that_name_them():
    result = _run("--variant=bad:train.no_such_knob=1", "--variant=ok:")
    assert result.returncode != 0
    assert "variant bad: bad gin configuration" in result.stderr
    assert "no_such_knob" in result.stderr
    result = _run("--variant=refused:build_transformer.no_such_knob=1")  # refused at build
    assert result.returncode != 0
    assert "variant refused: unknown architecture overrides ['no_such_knob']" in result.stderr
