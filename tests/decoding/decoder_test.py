import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.decoding.decoder import Decoder, box_keep_mask, editing_plan
from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation import flops
from magnets_tf.models.presets import build_transformer
from tests.decoding.reference_decode import reference_decode

N, K, B = 16, 6, 3
SCHEDULE = "8:2,4:1,2:1,1:2"
GREEDY = dict(temperature_bias=0.0, temperature_scale=0.0, mask_temperature=0.0)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    m = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=N)
    # Spread the random logits so greedy choices are far from float ties.
    emb = m.token_embedding.embeddings
    emb.assign(emb * 5.0)
    return m


def _plan(**kw):
    base = dict(num_tokens=N, num_steps=K, model_schedule=SCHEDULE)
    base.update(kw)
    return make_plan(**base)


CLASSES = np.array([1, 4, 7], np.int32)


def test_refresh_every_step_cached_equals_uncached(model):
    # Non-XLA keeps the test fast; test_xla_and_eager_agree_on_argmax ties the two modes.
    every = _plan(refresh="every_step", guidance_scale=3.0, guidance_steps=2)
    cached = Decoder(model, every, B, jit_compile=False)
    uncached = Decoder(model, _plan(use_cache=False, guidance_scale=3.0, guidance_steps=2), B,
                       jit_compile=False)
    assert every.use_cache and every.refresh_steps == (True,) * K
    a = cached.generate(CLASSES, [5, 6])
    b = uncached.generate(CLASSES, [5, 6])
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() < model.codebook_size


@pytest.mark.parametrize("refresh", ["model_change", "never"])
def test_cached_decoder_matches_foundation_kv_cache_reference(model, refresh):
    plan = _plan(refresh=refresh, guidance_scale=2.0, guidance_steps=3, **GREEDY)
    tokens = Decoder(model, plan, B, jit_compile=False).generate(CLASSES, [0, 0])
    want = reference_decode(model, plan, CLASSES, tf.zeros([B, N], tf.int32),
                            tf.zeros([B, N], bool))
    assert not plan.refresh_steps[-1]  # the reference's cached path is exercised
    np.testing.assert_array_equal(tokens, want)


def test_processed_positions_equal_plan_and_exact_gflops(model):
    plan = _plan(guidance_scale=2.0, guidance_steps=3)
    decoder = Decoder(model, plan, B, jit_compile=False)
    _, stats = decoder.generate_with_stats(CLASSES, [1, 2])
    np.testing.assert_array_equal(stats["processed"], plan.num_processed)
    np.testing.assert_array_equal(stats["distinct_processed"], plan.num_processed)
    np.testing.assert_array_equal(stats["uncond_processed"], plan.uncond_num_processed())
    np.testing.assert_array_equal(stats["logit_positions"], plan.masked_in)
    np.testing.assert_array_equal(stats["step_factor"], plan.factors)
    # At cached steps the queries are exactly the tokens masked at the previous input.
    for k in range(1, K):
        if not plan.refresh_steps[k]:
            assert stats["processed_were_masked"][k] == plan.masked_in[k - 1]
    # GFLOPs from the counted passes equal the `exact` model.
    arch = flops.ArchSpec.from_model(model)
    counted = [0.0] * K
    for k in range(K):
        for processed in (stats["processed"][k], stats["uncond_processed"][k]):
            if processed:
                counted[k] += flops.exact_pass_gflops(
                    arch, int(processed), N + 1, int(stats["logit_positions"][k]),
                    int(stats["step_factor"][k]))
    assert counted == pytest.approx(flops.exact_gflops(arch, plan))


def test_xla_and_eager_agree_on_argmax(model):
    plan = _plan(refresh="never", guidance_scale=1.5, guidance_steps=2, **GREEDY)
    xla = Decoder(model, plan, B, jit_compile=True).generate(CLASSES, [3, 3])
    eager = Decoder(model, plan, B, jit_compile=False).generate(CLASSES, [3, 3])
    np.testing.assert_array_equal(xla, eager)


def test_guidance_only_on_last_steps(model):
    guided = Decoder(model, _plan(guidance_scale=50.0, guidance_steps=2), B, jit_compile=False,
                     record_steps=True)
    plain = Decoder(model, _plan(), B, jit_compile=False, record_steps=True)
    g_tokens, g_stats = guided.generate_with_stats(CLASSES, [9, 9])
    p_tokens, p_stats = plain.generate_with_stats(CLASSES, [9, 9])
    np.testing.assert_array_equal(g_stats["uncond_processed"][:K - 2], 0)
    assert np.all(g_stats["uncond_processed"][K - 2:] > 0)
    # Identical until guidance starts, different after.
    np.testing.assert_array_equal(g_stats["tokens_per_step"][:K - 2],
                                  p_stats["tokens_per_step"][:K - 2])
    assert not np.array_equal(g_tokens, p_tokens)
    # Every recorded step unmasks exactly the plan's count, never re-masking.
    masked = (g_stats["tokens_per_step"] == model.mask_token_id).sum(axis=2)
    np.testing.assert_array_equal(masked, np.tile(np.array(_plan().masked_out)[:, None], [1, B]))
    # Deterministic given the seed; another seed gives other samples.
    np.testing.assert_array_equal(p_tokens, plain.generate(CLASSES, [9, 9]))
    assert not np.array_equal(p_tokens, plain.generate(CLASSES, [9, 8]))


def test_edit_keeps_given_tokens_inpaint_and_class_edit(model):
    keep = box_keep_mask((4, 4), 1, 1, 2, 2)  # inpaint the 2x2 centre
    assert keep.sum() == 12
    plan = editing_plan(keep, num_steps=4, model_schedule="4:2,1:2", guidance_scale=1.0,
                        guidance_steps=1)
    assert plan.num_condition_tokens == 12
    decoder = Decoder(model, plan, B, jit_compile=False)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, model.codebook_size, [B, N]).astype(np.int32)
    keep_b = np.tile(keep, [B, 1])
    out, stats = decoder.edit_with_stats(tokens, keep_b, CLASSES, [0, 1])
    np.testing.assert_array_equal(out[keep_b], tokens[keep_b])
    assert out.min() >= 0 and out.max() < model.codebook_size
    np.testing.assert_array_equal(stats["processed"], plan.num_processed)
    # Class editing: same kept tokens, another class.
    other = decoder.edit(tokens, keep_b, (CLASSES + 1) % 10, [0, 1])
    np.testing.assert_array_equal(other[keep_b], tokens[keep_b])
    # Per-row masks may differ as long as the count matches (outpainting here).
    out_keep = np.stack([box_keep_mask((4, 4), 0, 0, 3, 4, keep_inside=True),
                         box_keep_mask((4, 4), 1, 0, 3, 4, keep_inside=True),
                         box_keep_mask((4, 4), 0, 0, 4, 3, keep_inside=True)])
    assert editing_plan(out_keep, num_steps=4, model_schedule="4:2,1:2",
                        guidance_scale=1.0, guidance_steps=1) == plan
    out2 = decoder.edit(tokens, out_keep, CLASSES, [2, 2])
    np.testing.assert_array_equal(out2[out_keep], tokens[out_keep])
    with pytest.raises(ValueError, match="keeps"):
        decoder.edit(tokens, np.ones([B, N], bool), CLASSES, [0, 1])


def test_condition_tokens_are_kept_and_never_requeried(model):
    plan = _plan(num_condition_tokens=4)
    decoder = Decoder(model, plan, B, jit_compile=False)
    cond = np.arange(B * 4, dtype=np.int32).reshape(B, 4)
    out, stats = decoder.generate_with_stats(CLASSES, [0, 0], condition_tokens=cond)
    np.testing.assert_array_equal(out[:, :4], cond)
    np.testing.assert_array_equal(stats["processed"], plan.num_processed)
    with pytest.raises(ValueError, match="condition_tokens"):
        decoder.generate(CLASSES, [0, 0])


def test_bad_arguments_raise_clear_errors(model):
    with pytest.raises(ValueError, match="num_tokens"):
        Decoder(model, make_plan(9, 3, "1:3"), B)
    with pytest.raises(ValueError, match="batch_size"):
        Decoder(model, _plan(), 0)
    decoder = Decoder(model, _plan(), B)
    with pytest.raises(ValueError, match="class ids"):
        decoder.generate([1, 2, 99], [0, 0])
    with pytest.raises(ValueError, match="seed"):
        decoder.generate(CLASSES, [0, 0, 0])
    with pytest.raises(ValueError, match="box"):
        box_keep_mask((4, 4), 3, 3, 2, 2)


def test_bfloat16_decode_tracks_float32_decode(model):
    plan = _plan(guidance_scale=3.0, guidance_steps=2, **GREEDY)
    full = Decoder(model, plan, B, jit_compile=False)
    half = Decoder(model, plan, B, jit_compile=False, compute_dtype="bfloat16")
    assert full.compute_dtype == tf.float32 and half.compute_dtype == tf.bfloat16
    tokens_full = full.generate(CLASSES, seed=[0, 0])
    tokens_half = half.generate(CLASSES, seed=[0, 0])
    assert tokens_half.dtype == np.int32 and tokens_half.shape == (B, N)
    assert ((tokens_half >= 0) & (tokens_half < model.codebook_size)).all()
    # Greedy decodes from the same weights mostly pick the same tokens (that the passes
    # really run in bfloat16 is checked in tests/models/transformer_test.py).
    agreement = (tokens_half == tokens_full).mean()
    assert 0.5 <= agreement, agreement
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        Decoder(model, plan, B, compute_dtype="int8")
