"""Tests of the decode-plan search: space, budget, pool, successive halving, cache, outputs.

The logic tests score plans with a fixed function of the plan (deterministic and cheap);
`test_search_on_a_tiny_random_model` runs the real decoder, tokenizer and FID network.
"""
import functools
import importlib.util
import math

import gin
import pytest

from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation import flops
from magnets_tf.evaluation import schedule_search as search

ARCH = flops.ArchSpec(num_layers=6, hidden_size=128, num_heads=2, mlp_dim=512,
                      codebook_size=512)
PLAN_FN = functools.partial(make_plan, 256, guidance_scale=2.0, available_factors=(1, 2, 4, 8))
FACTORS = (1, 2, 4, 8)


def _space(**overrides):
    kwargs = dict(num_steps_choices=(8, 12), factors=FACTORS,
                  refresh_choices=("model_change", "never", "every_step"),
                  guidance_steps_choices=(0, 4), include=[search.paper_candidate()])
    kwargs.update(overrides)
    return search.search_space(PLAN_FN, ARCH, **kwargs)


def test_compositions_and_schedules():
    assert list(search.compositions(2, 3)) == [(0, 0, 2), (0, 1, 1), (0, 2, 0), (1, 0, 1),
                                               (1, 1, 0), (2, 0, 0)]
    assert len(list(search.compositions(12, 4))) == math.comb(15, 3)
    ascending = search.model_schedules(3, (1, 2))
    assert ascending == [((1, 3),), ((2, 1), (1, 2)), ((2, 2), (1, 1)), ((2, 3),)]
    any_order = search.model_schedules(3, (1, 2), order="any")
    assert ((1, 2), (2, 1)) in any_order and len(any_order) == 6
    with pytest.raises(ValueError, match="unknown order"):
        search.model_schedules(3, (1, 2), order="random")


def test_space_keeps_one_candidate_per_computation_and_costs_it_exactly():
    space = _space()
    keys = [c.key for c in space]
    assert len(keys) == len(set(keys))
    identities = [search.plan_identity(c.plan) for c in space]
    assert len(identities) == len(set(identities))
    # One sub-model: 'never' refreshes exactly where 'model_change' does, so it is dropped.
    assert "K=8|1:8|refresh=model_change|G=0" in keys
    assert "K=8|1:8|refresh=never|G=0" not in keys
    paper = next(c for c in space if c.key == search.paper_candidate().key)
    assert paper.gflops == pytest.approx(2.6200032)  # docs/results.md, 6 x 128 model
    maskgit_pp = search.cost_candidate(search.maskgit_pp_candidate(), PLAN_FN, ARCH)
    assert maskgit_pp.gflops == pytest.approx(6.6705408)  # = 1:12 without cache
    uncached = PLAN_FN(num_steps=12, model_schedule="1:12", use_cache=False, guidance_steps=4)
    assert maskgit_pp.gflops == pytest.approx(sum(flops.exact_gflops(ARCH, uncached)))
    with pytest.raises(ValueError, match="unknown refresh"):
        _space(refresh_choices=("sometimes",))


def test_budget_helpers():
    assert search.within_budget(2.6200032, 2.62)  # a budget read off the printed cost
    assert not search.within_budget(2.63, 2.62)
    assert search.budget_from_ratio(6.6705408, 2.55) == pytest.approx(2.6159, abs=1e-4)
    assert search.gflops_for_latency(30.0, 60.0, 2.62) == pytest.approx(1.31)
    with pytest.raises(ValueError, match="positive"):
        search.budget_from_ratio(6.67, 0)


def test_budget_maximal_plans_cannot_widen_a_step_within_the_budget():
    space = _space()
    maximal = search.budget_maximal(space, PLAN_FN, ARCH, 2.62, FACTORS)
    assert maximal and all(search.within_budget(c.gflops, 2.62) for c in maximal)
    assert search.paper_candidate().key in {c.key for c in maximal}
    for costed in maximal:
        for move in search.wider_moves(costed.candidate, FACTORS):
            assert not search.within_budget(search.cost_candidate(move, PLAN_FN, ARCH).gflops,
                                            2.62)
    # A cheap plan that can still widen a step is not maximal.
    assert "K=12|8:12|refresh=model_change|G=0" not in {c.key for c in maximal}


def test_wider_moves():
    moves = {m.schedule_text for m in search.wider_moves(
        search.Candidate(4, ((8, 2), (1, 2))), FACTORS)}
    assert moves == {"8:1,4:1,1:2", "8:1,2:1,1:2", "8:1,1:3"}
    any_order = {m.schedule_text for m in search.wider_moves(
        search.Candidate(4, ((1, 2), (8, 2))), FACTORS, order="any")}
    assert any_order == {"1:3,8:1"}


def test_pool_is_seeded_stratified_and_includes_the_paper_plan():
    maximal = search.budget_maximal(_space(), PLAN_FN, ARCH, 2.62, FACTORS)
    paper = next(c for c in maximal if c.key == search.paper_candidate().key)
    pool = search.select_pool(maximal, 6, seed=0, include=[paper])
    assert len(pool) == 6 and paper in pool
    assert [c.key for c in pool] == sorted(c.key for c in pool)
    assert pool == search.select_pool(maximal, 6, seed=0, include=[paper])
    assert pool != search.select_pool(maximal, 6, seed=1, include=[paper])
    # Stratified: with fewer slots than groups, no group is drawn twice.
    groups = [c.candidate.group for c in pool if c != paper]
    assert len(groups) == len(set(groups))
    assert len(search.select_pool(maximal, 10_000, seed=0)) == len(maximal)


def test_halving_rounds():
    rounds = search.halving_rounds(2000, 4, seed=0)
    assert [(r.n, r.seed) for r in rounds] == [(250, 0), (500, 1), (1000, 2), (2000, 3)]
    assert search.survivors_count(5, 0.5) == 3 and search.survivors_count(1, 0.5) == 1
    assert [r.n for r in search.halving_rounds(8, 2, seed=0)] == [4, 8]
    with pytest.raises(ValueError, match="at least 4 samples"):
        search.halving_rounds(8, 3, seed=0)


def _fake_fid(costed, r):
    """A deterministic score: more compute is better, minus a round-dependent wobble."""
    wobble = (sum(map(ord, costed.key)) * (r.seed + 1)) % 7
    return {"fid": 100.0 / costed.gflops + wobble + 1000.0 / r.n,
            "gflops_exact": costed.gflops, "gflops_paper": 0.0}


def _pool(size=8, budget=2.62):
    space = _space()
    maximal = search.budget_maximal(space, PLAN_FN, ARCH, budget, FACTORS)
    paper = next(c for c in space if c.key == search.paper_candidate().key)
    return search.select_pool(maximal, size, 0, include=[paper]), paper


def test_successive_halving_keeps_the_best_and_scores_anchors_every_round(tmp_path):
    pool, paper = _pool()
    maskgit_pp = search.cost_candidate(search.maskgit_pp_candidate(), PLAN_FN, ARCH)
    rounds = search.halving_rounds(400, 3, seed=0)
    cache = search.EvaluationCache(tmp_path, {"model": "m"})
    history, new = search.run_search(pool, rounds, _fake_fid, cache, keep=0.5,
                                     anchors=[paper, maskgit_pp], progress=False)
    assert [len(h["ranked"]) for h in history] == [8, 4, 2]
    assert new == 8 + 4 + 2 + 3  # MaskGIT++ in each round; the paper plan is in the pool
    for before, after in zip(history, history[1:]):
        best_half = {r["key"] for r in before["ranked"][:len(after["ranked"])]}
        assert {r["key"] for r in after["ranked"]} == best_half
        assert set(after["anchors"]) == {paper.key, maskgit_pp.key}
    fids = [r["fid"] for r in history[-1]["ranked"]]
    assert fids == sorted(fids)


def test_an_anchor_dropped_from_the_pool_is_still_scored_every_round(tmp_path):
    pool, paper = _pool()
    rounds = search.halving_rounds(400, 3, seed=0)

    def paper_worst(costed, r):
        row = _fake_fid(costed, r)
        return dict(row, fid=row["fid"] + (1000.0 if costed.key == paper.key else 0.0))

    history, new = search.run_search(pool, rounds, paper_worst,
                                     search.EvaluationCache(tmp_path, {"model": "m"}),
                                     anchors=[paper], progress=False)
    assert paper.key in {r["key"] for r in history[0]["ranked"]}
    assert all(paper.key not in {r["key"] for r in h["ranked"]} for h in history[1:])
    assert all(h["anchors"][paper.key]["n"] == h["round"].n for h in history)
    assert new == 8 + (4 + 1) + (2 + 1)


def test_search_resumes_from_its_cache_and_is_deterministic(tmp_path):
    pool, paper = _pool()
    rounds = search.halving_rounds(400, 3, seed=0)
    calls = []

    def counting(costed, r):
        calls.append((costed.key, r.n))
        return _fake_fid(costed, r)

    cache = search.EvaluationCache(tmp_path / "a", {"model": "m"})
    stopped, new = search.run_search(pool, rounds, counting, cache, anchors=[paper],
                                     max_evaluations=5, progress=False)
    assert stopped is None and new == 5 and len(calls) == 5
    history, new = search.run_search(pool, rounds, counting, cache, anchors=[paper],
                                     progress=False)
    assert new == 8 + 4 + 2 - 5  # nothing evaluated twice
    assert len(calls) == len(set(calls)) == 14
    fresh = search.run_search(pool, rounds, _fake_fid,
                              search.EvaluationCache(tmp_path / "b", {"model": "m"}),
                              anchors=[paper], progress=False)[0]
    assert [h["ranked"] for h in fresh] == [h["ranked"] for h in history]


def test_cache_refuses_another_setting(tmp_path):
    cache = search.EvaluationCache(tmp_path, {"model": "m", "guidance_scale": 2.0})
    cache.put("k", "fid", 8, 0, {"key": "k", "fid": 1.0, "n": 8, "seed": 0})
    assert search.EvaluationCache(tmp_path, {"model": "m", "guidance_scale": 2.0}).get(
        "k", "fid", 8, 0)["fid"] == 1.0
    with pytest.raises(ValueError, match="guidance_scale: 2.0 there, 4.0 now"):
        search.EvaluationCache(tmp_path, {"model": "m", "guidance_scale": 4.0})


def test_rows_front_plot_and_rank_correlation(tmp_path):
    pool, paper = _pool()
    maskgit_pp = search.cost_candidate(search.maskgit_pp_candidate(), PLAN_FN, ARCH)
    rounds = search.halving_rounds(400, 3, seed=0)
    cache = search.EvaluationCache(tmp_path / "cache", {"model": "m"})
    history, _ = search.run_search(pool, rounds, _fake_fid, cache, anchors=[paper, maskgit_pp],
                                   progress=False)
    rows = search.search_rows(cache, rounds, pool, {"paper": paper, "maskgit_pp": maskgit_pp})
    assert len(rows) == 8 + 4 + 2 + 3
    assert {(r["anchor"], r["role"]) for r in rows if r["anchor"]} == {
        ("paper", "candidate"), ("maskgit_pp", "anchor")}
    front = search.front_rows(rows)
    for row in front:  # nothing in its round is both cheaper and better
        assert not any(r["round"] == row["round"] and r["role"] == "candidate"
                       and r["gflops_exact"] < row["gflops_exact"] and r["fid"] < row["fid"]
                       for r in rows)
    search.write_csv(tmp_path / "front.csv", front)
    assert (tmp_path / "front.csv").read_text().startswith("round,n,seed,key,role,anchor")
    png = search.plot_search(rows, tmp_path / "front.png", 2.62, history[-1]["ranked"][0]["key"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The last round holds 2 survivors and the MaskGIT++ anchor: 3 plans to correlate over.
    correlations = search.rank_correlations(rows, rounds[-1].index)
    assert sorted(correlations) == [0, 1]
    assert all(c["plans"] == 3 and -1 <= c["spearman"] <= 1 for c in correlations.values())


def test_rank_correlations():
    rows = [dict(round=r, key=k, fid=f) for r, k, f in [
        (0, "a", 1.0), (0, "b", 2.0), (0, "c", 3.0), (0, "d", 4.0),
        (1, "a", 10.0), (1, "b", 30.0), (1, "c", 20.0), (2, "a", 5.0), (2, "b", 6.0),
        (2, "c", 7.0)]]
    assert search.rank_correlations(rows, 2) == {0: {"plans": 3, "spearman": 1.0},
                                                1: {"plans": 3, "spearman": 0.5}}


def test_gin_text_makes_the_same_plan():
    plan = PLAN_FN(num_steps=10, model_schedule="4:6,1:4", refresh="never", guidance_steps=2,
                   temperature_bias=0.25)
    text = search.plan_gin_text(plan, ["python tools/evaluate.py --gin_file=x.gin", ""])
    assert text.startswith("# python tools/evaluate.py --gin_file=x.gin\n#\nmake_plan.")
    gin.clear_config()
    try:
        gin.parse_config(text)
        again = make_plan(256, available_factors=FACTORS)
    finally:
        gin.clear_config()
    assert again == plan


HAS_DECODER = importlib.util.find_spec("magnets_tf.decoding.decoder") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_DECODER, reason="magnets_tf.decoding.decoder not available")
def test_search_on_a_tiny_random_model(tmp_path):
    """The real decoder, tokenizer and FID network: determinism, budget, resume."""
    import numpy as np
    import tensorflow as tf
    from magnets_tf.evaluation import fid, generation
    from magnets_tf.evaluation.inception import InceptionFeatureExtractor
    from magnets_tf.models.presets import build_transformer
    from magnets_tf.models.vqgan import build_vqgan

    tf.keras.utils.set_random_seed(0)
    tokenizer = build_vqgan("small_8x8", image_shape=(28, 28, 1))
    model = build_transformer("tiny", codebook_size=tokenizer.codebook_size, num_classes=10,
                              num_tokens=64)
    decode_fn = generation.TokenizerDecoder(tokenizer)
    extractor = InceptionFeatureExtractor(batch_size=8)
    images = np.random.default_rng(0).uniform(size=(12, 28, 28, 1)).astype(np.float32)
    reference = fid.feature_statistics(extractor.features(images)["pool"])
    reference["features"] = extractor.features(images)["pool"]
    arch = flops.ArchSpec.from_model(model)
    plan_fn = functools.partial(make_plan, model.num_tokens, guidance_scale=2.0,
                                available_factors=model.factors)
    space = search.search_space(plan_fn, arch, (4,), model.factors, ("model_change",),
                                (0, 2))
    budget = search.budget_from_ratio(
        search.cost_candidate(search.maskgit_pp_candidate(search.Candidate(4, ((1, 4),))),
                              plan_fn, arch).gflops, 1.5)
    maximal = search.budget_maximal(space, plan_fn, arch, budget, model.factors)
    pool = search.select_pool(maximal, 3, seed=0)
    assert all(c.gflops <= budget for c in pool)
    rounds = search.halving_rounds(8, 2, seed=0)

    def score(costed, r):
        return generation.evaluate_plan(model, costed.plan, decode_fn, extractor, reference,
                                        r.n, 4, seed=r.seed, jit_compile=False,
                                        progress=False)[0]

    first = search.EvaluationCache(tmp_path / "first", {"model": "tiny"})
    assert search.run_search(pool, rounds, score, first, max_evaluations=2,
                             progress=False)[0] is None
    history, new = search.run_search(pool, rounds, score, first, progress=False)
    assert new == 3 + 2 - 2  # resumed: the two cached evaluations are not rerun
    again, _ = search.run_search(pool, rounds, score,
                                 search.EvaluationCache(tmp_path / "again", {"model": "tiny"}),
                                 progress=False)
    strip = lambda h: [(r["key"], r["fid"]) for r in h["ranked"]]  # noqa: E731
    assert [strip(h) for h in again] == [strip(h) for h in history]
    best = history[-1]["ranked"][0]
    assert best["gflops_exact"] <= budget and best["n"] == 8


def test_weights_digest_follows_the_weights_not_the_folder_or_the_logs(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "transformer.weights.h5").write_bytes(b"weights")
        (tmp_path / name / "transformer_config.json").write_text("{}")
    (tmp_path / "b" / "metrics.json").write_text('{"fid": 1}')
    assert search.weights_digest(tmp_path / "a") == search.weights_digest(tmp_path / "b")
    (tmp_path / "b" / "transformer.weights.h5").write_bytes(b"trained more")
    assert search.weights_digest(tmp_path / "a") != search.weights_digest(tmp_path / "b")
    with pytest.raises(ValueError, match="holds no weights"):
        search.weights_digest(tmp_path)
