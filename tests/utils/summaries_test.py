"""Metrics dicts as TensorBoard scalars (tools/evaluate.py --tensorboard_dir)."""
import math

from magnets_tf.utils import event_files, summaries


def test_only_finite_numbers_become_scalars(tmp_path):
    metrics = {"fid": 12.5, "n": 8, "cache": True, "schedule": "8:3,1:3", "per_class": [1, 2],
               "fvd": {"fvd": 3.0}, "inception_score": math.nan}
    assert summaries.scalar_metrics(metrics) == {"fid": 12.5, "n": 8.0}
    tags = summaries.write_scalars(tmp_path / "eval", 300, metrics, prefix="generation/")
    assert tags == ["generation/fid", "generation/n"]
    assert event_files.scalar_steps(tmp_path / "eval") == {"generation/fid": [300],
                                                           "generation/n": [300]}
    summaries.write_scalars(tmp_path / "eval", 600, {"fid": 10.0}, prefix="generation/")
    assert event_files.scalar_steps(tmp_path / "eval")["generation/fid"] == [300, 600]
