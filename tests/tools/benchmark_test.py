import json

import pytest

from tests.tool_runner import run_tool


def _run(*args, timeout=600):
    return run_tool("benchmark", *args, timeout=timeout)


def test_tiny_benchmark_writes_json_and_summary_line(tmp_path):
    out = tmp_path / "bench.json"
    result = _run("--preset=tiny", "--grid=4", "--steps=4", "--schedule=8:1,4:1,2:1,1:1",
                  "--cfg_last=2", "--batch_size=2", "--repeats=1", "--num_classes=10",
                  "--codebook_size=32", f"--output_json={out}")
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    last = result.stdout.strip().splitlines()[-1]
    assert last == (f"speedup={data['speedup']:.2f} flop_ratio={data['exact_flop_ratio']:.2f} "
                    f"baseline_efficiency={data['baseline_efficiency']:.2f}")
    assert data["speedup"] == pytest.approx(data["baseline"]["latency_s"]
                                            / data["magnets"]["latency_s"])
    assert data["exact_flop_ratio"] > 1 and data["paper_flop_ratio"] > 1
    assert data["matmul"]["gflop_per_s"] > 0
    # 512-bit XLA vectors exactly where the host has AVX-512 (and the caller chose no width).
    from magnets_tf import xla_cpu
    if xla_cpu.vector_width() is None:
        asked = "--xla_cpu_prefer_vector_width=512" in data["machine"]["xla_flags"]
        assert asked == xla_cpu.host_has_avx512()


def test_bad_plan_is_a_usage_error():
    result = _run("--preset=tiny", "--steps=12", "--schedule=8:3")
    assert result.returncode != 0 and "covers 3 steps" in result.stderr


def test_compare_compute_dtypes_reports_each_dtype_and_its_speedup(tmp_path):
    out = tmp_path / "bench.json"
    result = _run("--preset=tiny", "--grid=4", "--steps=4", "--schedule=8:2,1:2",
                  "--cfg_last=1", "--batch_size=2", "--repeats=1", "--num_classes=10",
                  "--codebook_size=32", "--compare_compute_dtypes=float32,bfloat16",
                  "--jit_compile=false", f"--output_json={out}")
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["jit_compile"] is False and data["compute_dtypes"] == ["float32", "bfloat16"]
    assert set(data["dtype_speedup"]["bfloat16"]) == {"baseline", "magnets"}
    assert result.stdout.strip().splitlines()[-1].startswith("bfloat16 over float32: baseline=")


@pytest.mark.parametrize("flags_given, message", [
    (("--compare_compute_dtypes=float32,bfloat16", "--compute_dtype=bfloat16"), "not both"),
    (("--compare_compute_dtypes=float32,float8",), "two or more of"),
    (("--compare_compute_dtypes=float32",), "two or more of"),
])
def test_bad_dtype_comparison_is_a_usage_error(flags_given, message):
    result = _run("--preset=tiny", "--grid=4", "--steps=4", "--schedule=8:2,1:2", *flags_given)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.slow
def test_preset_s_meets_the_performance_targets(tmp_path):
    out = tmp_path / "bench_S.json"
    result = _run("--preset=S", "--grid=16", "--steps=12", "--cfg_last=4", "--batch_size=8",
                  f"--output_json={out}", timeout=3600)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert all(t["met"] for t in data["targets"].values()), result.stdout


def test_model_dir_times_the_trained_architecture(tmp_path):
    from magnets_tf.models.presets import build_transformer
    from magnets_tf.models.saving import save_transformer

    model = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=9,
                              num_layers=1, hidden_size=32, mlp_dim=64)
    (tmp_path / "model").mkdir()
    save_transformer(model, str(tmp_path / "model"))
    out = tmp_path / "bench.json"
    result = _run(f"--model_dir={tmp_path / 'model'}", "--steps=4", "--cfg_last=2",
                  "--schedule=8:1,4:1,2:1,1:1", "--batch_size=2", "--repeats=1",
                  f"--output_json={out}")
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["num_tokens"] == 9 and data["model_dir"] == str(tmp_path / "model")


def test_missing_model_dir_is_a_usage_error(tmp_path):
    result = _run(f"--model_dir={tmp_path}", "--steps=4", "--schedule=1:4", "--cfg_last=0")
    assert result.returncode != 0 and "transformer_config.json not found" in result.stderr


def test_model_dir_with_architecture_flags_is_a_usage_error(tmp_path):
    result = _run(f"--model_dir={tmp_path}", "--preset=S", "--grid=8")
    assert result.returncode != 0 and "drop --preset, --grid" in result.stderr
