import numpy as np
import pytest

from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation import benchmark, flops
from magnets_tf.models.presets import build_transformer


def test_matmul_probe_counts_flops():
    probe = benchmark.MatmulProbe(64, 32, 48, inner=3)
    assert probe.flops_per_call == 2 * 64 * 32 * 48 * 3
    assert probe.time_once() > 0
    assert probe.seconds_per_call(0.05) > 0


def test_run_benchmark_reports_consistent_numbers():
    model = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=16)
    plan = make_plan(16, 4, "8:1,4:1,2:1,1:1", guidance_scale=1.0, guidance_steps=2)
    calls = []
    result = benchmark.run_benchmark(model, plan, batch_size=2, repeats=2, jit_compile=False,
                                     probe_seconds=0.05,
                                     progress=lambda d, t: calls.append((d, t)))
    assert result["jit_compile"] is False
    assert calls == [(1, 2), (2, 2)]
    arch = flops.ArchSpec.from_model(model)
    base = sum(flops.exact_gflops(arch, flops.uncached_baseline_plan(plan)))
    assert result["baseline"]["exact_gflops_per_image"] == pytest.approx(base)
    assert result["exact_flop_ratio"] == pytest.approx(
        base / sum(flops.exact_gflops(arch, plan)))
    lat = result["baseline"]["latency_s"]
    assert lat == pytest.approx(np.median(result["baseline"]["times_s"]))
    assert result["baseline"]["achieved_gflop_per_s"] == pytest.approx(2 * base * 2 / lat)
    assert result["baseline_efficiency"] == pytest.approx(
        result["baseline"]["achieved_gflop_per_s"] / result["matmul"]["gflop_per_s"])
    assert set(result["targets"]) == {"speedup", "speedup_vs_exact_ratio",
                                      "baseline_efficiency"}
    table = benchmark.format_table(result)
    assert table.splitlines()[-1] == benchmark.summary_line(result)
    with pytest.raises(ValueError, match="repeats"):
        benchmark.run_benchmark(model, plan, repeats=0)


def test_plan_latency_times_one_batch_decode():
    model = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=16)
    plan = make_plan(16, 4, "8:2,1:2", guidance_scale=1.0, guidance_steps=1)
    seconds = benchmark.plan_latency(model, plan, batch_size=2, repeats=1, jit_compile=False)
    assert 0 < seconds < 60
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        benchmark.plan_latency(model, plan, batch_size=2, repeats=0)


def test_compare_compute_dtypes_times_every_decoder_in_one_run():
    model = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=16)
    plan = make_plan(16, 4, "8:2,1:2", guidance_scale=1.0, guidance_steps=1)
    calls = []
    result = benchmark.compare_compute_dtypes(
        model, plan, ("float32", "bfloat16", "float32"), batch_size=2, repeats=2,
        jit_compile=False, probe_seconds=0.05, progress=lambda d, t: calls.append(d))
    assert calls == [1, 2]
    assert result["compute_dtypes"] == ["float32", "bfloat16"]
    fp32, bf16 = result["by_dtype"]["float32"], result["by_dtype"]["bfloat16"]
    for pair in (fp32, bf16):
        assert len(pair["magnets"]["times_s"]) == 2
        assert pair["speedup"] == pytest.approx(
            pair["baseline"]["latency_s"] / pair["magnets"]["latency_s"])
    # Same plans, same FLOPs: the dtype changes time only.
    assert bf16["exact_flop_ratio"] == fp32["exact_flop_ratio"]
    assert result["dtype_speedup"]["bfloat16"]["magnets"] == pytest.approx(
        fp32["magnets"]["latency_s"] / bf16["magnets"]["latency_s"])
    table = benchmark.format_table(result)
    assert "-- compute_dtype=bfloat16" in table and "bfloat16 over float32:" in table
    with pytest.raises(ValueError, match="two compute dtypes"):
        benchmark.compare_compute_dtypes(model, plan, ("float32",), repeats=1)
