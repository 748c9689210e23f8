from pathlib import Path

import gin
import pytest

from magnets_tf.decoding.schedule import make_plan

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
