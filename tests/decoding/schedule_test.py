import math

import pytest

from magnets_tf.decoding.schedule import (DEFAULT_MODEL_SCHEDULE, MASK_SCHEDULES,
                                          format_model_schedule, make_plan, mask_ratio,
                                          parse_model_schedule)


def test_paper_plan_counts():
    plan = make_plan(256, 12, "8:3,4:3,2:3,1:3", guidance_scale=2.0, guidance_steps=4)
    assert plan.factors == (8,) * 3 + (4,) * 3 + (2,) * 3 + (1,) * 3
    assert plan.masked_in[0] == 256 and plan.masked_out[-1] == 0
    for k in range(11):
        assert plan.masked_out[k] == math.floor(256 * math.cos(math.pi / 2 * (k + 1) / 12))
        assert plan.masked_in[k + 1] == plan.masked_out[k]
    assert [k for k, r in enumerate(plan.refresh_steps) if r] == [0, 3, 6, 9]
    for k in range(12):
        want = 257 if plan.refresh_steps[k] else plan.masked_in[k - 1]
        assert plan.num_processed[k] == want
    assert plan.guided == (False,) * 8 + (True,) * 4
    assert plan.guidance_weight(7) == 0.0
    assert 0 < plan.guidance_weight(8) < plan.guidance_weight(11) <= 2.0
    # The unconditional branch has no cache before its first guided step.
    assert plan.uncond_num_processed()[8] == 257
    assert plan.uncond_num_processed()[10] == plan.num_processed[10]


def test_temperatures():
    plan = make_plan(64, 4, "1:4")
    assert plan.temperature(0) == pytest.approx(0.5 + 0.8 * 0.75)
    assert plan.temperature(3) == pytest.approx(0.5)
    assert plan.mask_noise(3) == 0.0


@pytest.mark.parametrize("refresh, expected", [
    ("every_step", [True] * 6), ("never", [True] + [False] * 5),
    ("model_change", [True, False, True, False, True, False])])
def test_refresh_policies(refresh, expected):
    plan = make_plan(64, 6, "4:2,2:2,1:2", refresh=refresh)
    assert list(plan.refresh_steps) == expected


def test_no_cache_processes_everything():
    plan = make_plan(64, 6, "1:6", use_cache=False)
    assert plan.num_processed == (65,) * 6


@pytest.mark.parametrize("name", sorted(MASK_SCHEDULES))
def test_every_schedule_unmasks_at_least_one_token_per_step(name):
    for n, k in [(16, 16), (49, 12), (256, 8)]:
        plan = make_plan(n, k, f"1:{k}", mask_schedule=name)
        assert all(a > b for a, b in zip(plan.masked_in, plan.masked_out))
        assert plan.masked_out[-1] == 0


def test_condition_tokens():
    plan = make_plan(64, 4, "2:2,1:2", num_condition_tokens=16)
    assert plan.masked_in[0] == 48 and plan.num_generated == 48
    assert plan.num_processed[0] == 65 and plan.num_processed[1] == 48


@pytest.mark.parametrize("kwargs, message", [
    (dict(model_schedule="8:3,4:3"), "covers 6 steps, but num_steps=12"),
    (dict(model_schedule="3:12"), "factor 3 is not one of"),
    (dict(model_schedule="8-12"), "bad model schedule entry"),
    (dict(guidance_steps=13, guidance_scale=1.0), "guidance_steps=13"),
    (dict(mask_schedule="exp"), "unknown mask_schedule 'exp'"),
    (dict(refresh="sometimes"), "unknown refresh policy"),
    (dict(num_steps=300, model_schedule="1:300"), "num_steps=300"),
    (dict(num_condition_tokens=256), "num_condition_tokens=256"),
    (dict(guidance_scale=-1.0), "guidance_scale must be >= 0"),
])
def test_invalid_plans(kwargs, message):
    args = dict(num_tokens=256, num_steps=12, model_schedule="8:3,4:3,2:3,1:3")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        make_plan(**args)


def test_parse_model_schedule():
    assert parse_model_schedule("8:3, 1:9") == ((8, 3), (1, 9))
    assert parse_model_schedule([(2, 1)]) == ((2, 1),)
    with pytest.raises(ValueError, match="empty"):
        parse_model_schedule(" , ")


def test_format_model_schedule_inverts_the_parser():
    assert format_model_schedule(((8, 3), (1, 9))) == "8:3,1:9"
    assert format_model_schedule(DEFAULT_MODEL_SCHEDULE) == DEFAULT_MODEL_SCHEDULE
    assert make_plan(256).model_schedule == parse_model_schedule(DEFAULT_MODEL_SCHEDULE)


@pytest.mark.parametrize("name", sorted(MASK_SCHEDULES))
def test_mask_ratio_is_one_formula_for_floats_and_tensors(name):
    import tensorflow as tf
    t = [0.0, 0.25, 0.5, 0.9]
    floats = [mask_ratio(name, x) for x in t]
    assert floats[0] == pytest.approx(1.0) and floats == sorted(floats, reverse=True)
    tensors = mask_ratio(name, tf.constant(t, tf.float64), xp=tf.math)
    assert tensors.numpy().tolist() == pytest.approx(floats, abs=1e-12)
    assert mask_ratio("cosine", 0.5) == math.cos(math.pi / 4)
    with pytest.raises(ValueError, match="unknown mask_schedule 'exp'"):
        mask_ratio("exp", 0.5)
