from pathlib import Path

import gin
import pytest

from magnets_tf.decoding.schedule import format_model_schedule, make_plan

GIN_DIR = Path(__file__).resolve().parents[2] / "gin" / "decoding"


@pytest.mark.parametrize("name, schedule, cache", [
    ("magnets_12_steps.gin", ((8, 3), (4, 3), (2, 3), (1, 3)), True),
    ("maskgit_pp_12_steps.gin", ((1, 12),), False),
])
def test_decoding_gin_files_make_their_plans(name, schedule, cache):
    path = GIN_DIR / name
    assert path.read_text().splitlines()[0].startswith("# python tools/sample.py")
    gin.clear_config()
    try:
        gin.parse_config_file(str(path))
        plan = make_plan(num_tokens=256)
    finally:
        gin.clear_config()
    assert plan.model_schedule == schedule and plan.use_cache == cache
    assert plan.num_steps == 12 and plan.guidance_steps == 4


# Paper Table 4 (gs, MTemp), Table 1 / Table 2 guidance steps; the video files' plans
# are made for 4x16x16 tokens, K600 with 512 condition tokens (5 frames -> 2 latent ones).
TABLE_4 = {
    "imagenet_magnets.gin": (256, 0, "8:3,4:3,2:3,1:3", True, 65.0, 4, 5.0, "null_class"),
    "imagenet_maskgit_pp.gin": (256, 0, "1:12", False, 65.0, 4, 6.0, "null_class"),
    "ucf101_magnets.gin": (1024, 0, "8:3,4:3,2:3,1:3", True, 0.0, 0, 5.0, "null_class"),
    "ucf101_magvit.gin": (1024, 0, "1:12", False, 0.0, 0, 5.0, "null_class"),
    "kinetics600_magnets.gin": (1024, 512, "8:3,4:3,2:3,1:3", True, 5.0, 2, 10.0,
                                "masked_condition"),
    "kinetics600_magvit.gin": (1024, 512, "1:12", False, 10.0, 2, 12.5, "masked_condition"),
}


@pytest.mark.parametrize("name", sorted(TABLE_4))
def test_table_4_decode_settings(name):
    tokens, condition, schedule, cache, gs, guided, mtemp, uncond = TABLE_4[name]
    path = GIN_DIR / name
    assert path.read_text().splitlines()[0].startswith("# python tools/sample.py")
    assert f"--gin_file=gin/decoding/{name}" in path.read_text().splitlines()[0]
    gin.clear_config()
    try:
        gin.parse_config_file(str(path))
        plan = make_plan(num_tokens=tokens, num_condition_tokens=condition)
    finally:
        gin.clear_config()
    assert format_model_schedule(plan.model_schedule) == schedule
    assert (plan.num_steps, plan.use_cache, plan.guidance_scale, plan.guidance_steps,
            plan.mask_temperature, plan.uncond_input) == (12, cache, gs, guided, mtemp, uncond)
    assert (plan.temperature_bias, plan.temperature_scale) == (0.5, 0.8)
    if cache:
        assert plan.refresh == "model_change"
