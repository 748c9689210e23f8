"""--stop_at_step / --max_wall_minutes: checked as usage errors, bound to the training
function's gin parameters (a flag overrides gin; an absent flag leaves gin alone)."""
import gin
import pytest
from absl import app, flags

from magnets_tf.cli import gin_flags, leg_flags
from magnets_tf.training import transformer_task  # noqa: F401 (registers gin `train`)


def _flags(*argv):
    values = flags.FlagValues()
    leg_flags.define_leg_flags("train", values)
    values(["tool", *argv])
    return values


def test_bad_values_are_usage_errors_naming_the_flag():
    leg_flags.check_leg_flags(_flags("--stop_at_step=1", "--max_wall_minutes=0.5"))
    with pytest.raises(app.UsageError, match="--stop_at_step must be >= 1, got 0"):
        leg_flags.check_leg_flags(_flags("--stop_at_step=0"))
    with pytest.raises(app.UsageError, match="--max_wall_minutes must be > 0, got -3.0"):
        leg_flags.check_leg_flags(_flags("--max_wall_minutes=-3"))


def test_given_flags_override_gin_and_absent_ones_leave_it():
    assert leg_flags.bindings("train", _flags()) == {"train.stop_at_step": None,
                                                     "train.max_wall_minutes": None}
    gin.parse_config("train.stop_at_step = 100\ntrain.max_wall_minutes = 30.0")
    gin_flags.bind_flag_overrides(leg_flags.bindings("train", _flags("--stop_at_step=40")))
    assert gin.query_parameter("train.stop_at_step") == 40
    assert gin.query_parameter("train.max_wall_minutes") == 30.0
