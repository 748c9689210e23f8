import pytest

from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation import flops

L = flops.ArchSpec.from_preset("L")


@pytest.mark.parametrize("steps, cfg, sched, baseline, ours", [
    (12, 4, "8:3,4:3,2:3,1:3", 1294, 490),
    (16, 6, "8:4,4:4,2:4,1:4", 1779, 608),
])
def test_paper_table_1(steps, cfg, sched, baseline, ours):
    plan = make_plan(256, steps, sched, guidance_scale=1.0, guidance_steps=cfg)
    base = flops.uncached_baseline_plan(plan)
    assert round(sum(flops.paper_gflops_for_plan(L, base))) == baseline
    assert round(sum(flops.paper_gflops_for_plan(L, plan))) == ours


def test_paper_step_formula():
    # One full pass of L over 257 tokens: Appendix F by hand.
    d, m = 1024, 4096
    want = (4 * 257 * d * d + 2 * 257 * 257 * d + 2 * 257 * m * d) * 24 / 1e9
    assert flops.paper_step_gflops(L, 0, 257, 1) == pytest.approx(want)


def test_exact_equals_paper_structure_for_uncached_full_model():
    plan = make_plan(256, 12, "1:12", use_cache=False)
    exact = flops.exact_gflops(L, plan)
    # Layers as the paper counts them, plus the MLM head on the M_k still-masked tokens.
    layers = flops.paper_step_gflops(L, 0, 257, 1)
    heads = [m * (1024 * 1024 + 1024 * 1024) / 1e9 for m in plan.masked_in]
    assert plan.masked_in[0] == 256
    assert exact == pytest.approx([layers + head for head in heads])


def test_exact_counts_unconditional_first_full_pass():
    plan = make_plan(256, 12, "8:3,4:3,2:3,1:3", guidance_scale=1.0, guidance_steps=4)
    exact = flops.exact_gflops(L, plan)
    m8 = plan.masked_in[8]
    step8 = flops.exact_pass_gflops(L, plan.num_processed[8], 257, m8, 2)
    full8 = flops.exact_pass_gflops(L, 257, 257, m8, 2)
    assert exact[8] == pytest.approx(step8 + full8)
    # Refresh every step costs more than the model-change policy; no cache most of all.
    every = flops.exact_gflops(L, make_plan(256, 12, "8:3,4:3,2:3,1:3", refresh="every_step"))
    change = flops.exact_gflops(L, make_plan(256, 12, "8:3,4:3,2:3,1:3"))
    assert sum(every) > sum(change)
    ratio = sum(flops.exact_gflops(L, flops.uncached_baseline_plan(plan))) / sum(exact)
    assert ratio > 2.5


def test_condition_tokens_reduce_compute():
    video = dict(num_tokens=1024, num_steps=12, model_schedule="8:3,4:3,2:3,1:3")
    gen = make_plan(**video)
    pred = make_plan(num_condition_tokens=512, **video)
    assert sum(flops.exact_gflops(L, pred)) < sum(flops.exact_gflops(L, gen))
    with pytest.raises(ValueError, match="num_condition_tokens"):
        flops.paper_gflops(L, 2, (1, 1), False, [], 10, num_condition_tokens=10)
