"""GFLOPs of the paper's video settings (Table 2): 4x16x16 = 1024 tokens + class token,
frame prediction conditioned on 512 tokens (5 frames ~ 2 of 4 temporal token slices),
12 steps, schedule 8:3,4:3,2:3,1:3, L-size model (MAGVIT-L has 306M parameters)."""
import pytest

from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation import flops

L = flops.ArchSpec.from_preset("L")
SCHEDULE = "8:3,4:3,2:3,1:3"


def _plans(condition, guidance_steps):
    ours = make_plan(1024, 12, SCHEDULE, num_condition_tokens=condition,
                     guidance_scale=5.0 if guidance_steps else 0.0,
                     guidance_steps=guidance_steps)
    return ours, flops.uncached_baseline_plan(ours)


def _paper(plan):
    return sum(flops.paper_gflops_for_plan(L, plan))


def test_video_sequence_is_1025_tokens():
    ours, base = _plans(512, 0)
    assert ours.sequence_length == base.sequence_length == 1025
    assert ours.num_generated == 512 and ours.masked_in[0] == 512


@pytest.mark.parametrize("condition,guidance,baseline,magnets", [
    (0, 0, 4334, 1701),    # UCF101: MAGVIT-L ~4.3k vs MaGNeTS ~1.7k (no guidance).
    (512, 0, 4334, 1244),  # K600 frame prediction: MAGVIT-L ~4.3k vs MaGNeTS ~1.2k.
    (512, 2, 5057, 1360),  # K600 with guidance on the last 2 steps: ~5.1k vs ~1.4k.
])
def test_table_2_gflops(condition, guidance, baseline, magnets):
    ours, base = _plans(condition, guidance)
    assert round(_paper(base)) == baseline
    assert round(_paper(ours)) == magnets


def test_frame_prediction_ratio_is_the_papers_3_7x_with_guidance_on_last_2():
    ours, base = _plans(512, 2)
    assert _paper(base) / _paper(ours) == pytest.approx(3.72, abs=0.01)
    ours0, base0 = _plans(512, 0)
    assert _paper(base0) / _paper(ours0) == pytest.approx(3.48, abs=0.01)


def test_condition_tokens_are_free_for_magnets_only():
    ours_fp, base_fp = _plans(512, 0)
    ours_gen, base_gen = _plans(0, 0)
    assert _paper(base_fp) == pytest.approx(_paper(base_gen))  # baseline re-processes them
    assert _paper(ours_fp) < 0.75 * _paper(ours_gen)


def test_exact_model_baseline_runs_all_tokens_and_magnets_never_requeries_condition():
    ours, base = _plans(512, 0)
    assert all(n == 1025 for n in base.num_processed)
    # After a refresh only the tokens masked at the previous step's input are queried:
    # never more than the 512 generated ones, so condition tokens are not re-queried.
    assert all(n <= 512 for n, r in zip(ours.num_processed, ours.refresh_steps) if not r)
    exact_ratio = sum(flops.exact_gflops(L, base)) / sum(flops.exact_gflops(L, ours))
    assert exact_ratio == pytest.approx(4343 / 1045, rel=0.01)  # head on masked tokens only


@pytest.mark.parametrize("row", flops.PAPER_ROWS, ids=lambda row: row.name)
def test_every_published_gflops_entry_is_reproduced(row):
    """Tables 1 and 2, to the precision printed there ("~4.3k": hundreds; "490": units)."""
    ours = flops.paper_row_gflops(row)
    if row.published.endswith("k"):
        assert round(ours, -2) == row.published_gflops, (row.name, ours)
        assert float(row.published.strip("~k")) * 1000 == row.published_gflops
    else:
        assert round(ours) == row.published_gflops == float(row.published), (row.name, ours)
