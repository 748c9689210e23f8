"""Decode-plan flags: canonical names, old aliases, and flag > gin > tool default > make_plan."""
import gin
import pytest
from absl import app, flags

from magnets_tf.cli import plan_flags
from magnets_tf.decoding.schedule import DEFAULT_MODEL_SCHEDULE, make_plan


def _flags(*argv, **defaults):
    values = flags.FlagValues()
    plan_flags.define_plan_flags(flag_values=values, **defaults)
    values(["tool", *argv])
    return values


class _Model:
    num_tokens, num_condition_tokens, factors = 16, 4, (1, 2)


def test_old_names_are_aliases_of_the_make_plan_names():
    old = _flags("--steps=4", "--schedule=2:2,1:2", "--cfg_last=1", "--nocache")
    new = _flags("--num_steps=4", "--model_schedule=2:2,1:2", "--guidance_steps=1",
                 "--use_cache=false")
    want = dict(num_steps=4, model_schedule="2:2,1:2", guidance_steps=1, use_cache=False)
    assert plan_flags.plan_settings(old) == plan_flags.plan_settings(new) == want


def test_flag_beats_gin_beats_tool_default_beats_make_plan():
    values = _flags(guidance_steps=4, guidance_scale=2.0)
    assert plan_flags.plan_settings(values) == dict(guidance_steps=4, guidance_scale=2.0)
    gin.parse_config(["make_plan.guidance_steps = 2", "make_plan.num_steps = 8"])
    assert plan_flags.plan_settings(values) == dict(guidance_scale=2.0)  # gin decides G
    assert plan_flags.plan_setting("guidance_steps", values) == 2
    assert plan_flags.plan_setting("model_schedule", values) == DEFAULT_MODEL_SCHEDULE
    given = _flags("--cfg_last=3", guidance_steps=4)
    assert plan_flags.plan_settings(given) == dict(guidance_steps=3)
    plan = plan_flags.decode_plan(num_tokens=64, flag_values=given,
                                  model_schedule="8:2,4:2,2:2,1:2", guidance_scale=1.0)
    assert (plan.num_steps, plan.guidance_steps) == (8, 3)  # steps from gin, G from the flag


def test_decode_plan_takes_the_model_grid_and_factors():
    values = _flags("--num_steps=2", "--model_schedule=2:1,1:1")
    plan = plan_flags.decode_plan(_Model(), flag_values=values)
    assert plan == make_plan(16, 2, "2:1,1:1", num_condition_tokens=4,
                             available_factors=(1, 2))
    with pytest.raises(app.UsageError, match="bad decode plan: .*factor 8 is not one of"):
        plan_flags.decode_plan(_Model(), flag_values=values, model_schedule="8:1,1:1")


def test_help_names_the_fallback_and_the_default_schedule():
    values = flags.FlagValues()
    plan_flags.define_plan_flags(flag_values=values, exclude=("num_steps",))
    assert "num_steps" not in values and "steps" not in values
    assert f"else '{DEFAULT_MODEL_SCHEDULE}'" in values["model_schedule"].help
    assert "gin make_plan.refresh" in values["refresh"].help
    with pytest.raises(ValueError, match="not decode-plan flags: \\['steps'\\]"):
        plan_flags.define_plan_flags(flag_values=flags.FlagValues(), steps=4)
