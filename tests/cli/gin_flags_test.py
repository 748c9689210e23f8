"""--gin_file / --gin_bindings: parsed through gin_setup; bad input is a usage error."""
import pytest
from absl import app, flags

from magnets_tf.cli import gin_flags
from magnets_tf.decoding.schedule import make_plan


def _flags(*argv):
    values = flags.FlagValues()
    gin_flags.define_gin_flags(values)
    values(["tool", *argv])
    return values


def test_files_and_bindings_reach_the_configurables(tmp_path):
    config = tmp_path / "plan.gin"
    config.write_text("make_plan.num_steps = 4\n")
    gin_flags.parse_gin_flags(_flags(f"--gin_file={config}",
                                     "--gin_bindings=make_plan.model_schedule='2:2,1:2'"))
    plan = make_plan(16)
    assert plan.num_steps == 4 and plan.model_schedule == ((2, 2), (1, 2))


def test_extra_bindings_come_after_the_flags(tmp_path):
    config = tmp_path / "plan.gin"
    config.write_text("make_plan.num_steps = 4\n")
    gin_flags.parse_gin_flags(
        _flags(f"--gin_file={config}", "--gin_bindings=make_plan.model_schedule='2:2,1:2'"),
        extra_bindings=["make_plan.model_schedule='4:2,1:2'"])
    assert make_plan(16).model_schedule == ((4, 2), (1, 2))


def test_missing_file_and_bad_binding_are_usage_errors(tmp_path):
    with pytest.raises(app.UsageError, match="--gin_file .*nope.gin does not exist"):
        gin_flags.parse_gin_flags(_flags(f"--gin_file={tmp_path / 'nope.gin'}"))
    with pytest.raises(app.UsageError, match="bad gin configuration: .*no_such_arg"):
        gin_flags.parse_gin_flags(_flags("--gin_bindings=make_plan.no_such_arg=1"))
