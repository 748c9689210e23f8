"""Throughput measurements: interleaved loop sizes on one train function, pipeline rate."""
import gin
import pytest
import tensorflow as tf

from magnets_tf.training import throughput
from magnets_tf.training.token_data import TokenShards
from magnets_tf.training.transformer_task import TransformerTask


def test_summarize_gives_median_and_spread():
    assert throughput.summarize([3.0, 1.0, 2.0]) == dict(median=2.0, min=1.0, max=3.0,
                                                         values=[3.0, 1.0, 2.0])


def test_variants_parse_into_names_and_bindings():
    assert throughput.parse_variants(
        ["base:", "nodrop: build_transformer.dropout=0.0 ;train.jit_compile=True;"]) == [
        ("base", []), ("nodrop", ["build_transformer.dropout=0.0", "train.jit_compile=True"])]


@pytest.mark.parametrize("specs, message", [
    (["nodropout"], "expected NAME:BINDING"),
    ([":build_transformer.dropout=0.0"], "expected NAME:BINDING"),
    (["a:", "a:train.batch_size=4"], "given twice"),
    ([], "no variant"),
])
def test_malformed_variants_are_named(specs, message):
    with pytest.raises(ValueError, match=message):
        throughput.parse_variants(specs)


def test_time_interleaved_alternates_the_order_and_reports_every_round():
    calls, rounds = [], []
    summaries = throughput.time_interleaved(
        {"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, 3,
        on_round=lambda r, rates: rounds.append((r, {k: len(v) for k, v in rates.items()})))
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert rounds == [(0, {"a": 1, "b": 1}), (1, {"a": 2, "b": 2}), (2, {"a": 3, "b": 3})]
    assert summaries["b"] == dict(median=2.0, min=2.0, max=2.0, values=[2.0] * 3)


def test_measure_reports_every_loop_size_and_the_pipeline_headroom(tokens_dir):
    gin.clear_config()
    gin.bind_parameter("build_transformer.preset", "tiny")
    gin.bind_parameter("build_transformer.num_layers", 1)
    task = TransformerTask(TokenShards(tokens_dir), 8, seed=0)
    try:
        report = throughput.measure(task, tf.distribute.get_strategy(), steps=2,
                                    loop_sizes=(1, 2), repeats=2, pipeline_batches=3)
    finally:
        gin.clear_config()
    assert set(report["steps_per_second"]) == {"1", "2"}
    for rate in report["steps_per_second"].values():
        assert len(rate["values"]) == 2 and 0 < rate["min"] <= rate["median"] <= rate["max"]
    # Warm-up (one call per size) plus 2 repeats x 2 sizes x 2 steps.
    assert int(task.iterations.numpy()) == 1 + 2 + 2 * 2 * 2
    pipeline = report["pipeline_examples_per_second"]["median"]
    assert report["step_examples_per_second"] == pytest.approx(
        report["steps_per_second"]["2"]["median"] * 8)
    assert report["pipeline_headroom"] == pytest.approx(
        pipeline / report["step_examples_per_second"])
