"""Guidance inputs of the decoder: MAGVIT-style unconditional branch for frame prediction.

The unconditional branch of a frame-prediction plan replaces the condition tokens by the
mask token, computes its own K/V for those positions and never reads the conditional
branch's cache; class-conditional plans keep class-token guidance (decoder_test.py)."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.decoding.decoder import Decoder, editing_plan
from magnets_tf.decoding.schedule import make_plan
from magnets_tf.models.presets import build_transformer
from tests.decoding.reference_decode import reference_decode

N, C, K, B = 16, 4, 6, 3
SCHEDULE = "8:2,4:1,2:1,1:2"
GREEDY = dict(temperature_bias=0.0, temperature_scale=0.0, mask_temperature=0.0)
CLASSES = np.array([1, 4, 7], np.int32)
CONDITION = np.array([[3, 1, 4, 1], [5, 9, 2, 6], [5, 3, 5, 8]], np.int32)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(1)
    m = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=N,
                          num_condition_tokens=C)
    emb = m.token_embedding.embeddings
    emb.assign(emb * 5.0)  # Spread the random logits: greedy choices far from ties.
    return m


def _plan(**kw):
    base = dict(num_tokens=N, num_steps=K, model_schedule=SCHEDULE, num_condition_tokens=C,
                guidance_scale=2.0, guidance_steps=3)
    base.update(kw)
    return make_plan(**base)


def _given():
    tokens = np.zeros([B, N], np.int32)
    tokens[:, :C] = CONDITION
    keep = np.zeros([B, N], bool)
    keep[:, :C] = True
    return tokens, keep


def test_plan_resolves_uncond_input():
    assert _plan().uncond_input == "masked_condition"  # auto, with condition tokens
    assert _plan(num_condition_tokens=0).uncond_input == "null_class"
    assert _plan().uncond_masks_condition and not _plan().uncond_keeps_class
    keep_class = _plan(uncond_input="masked_condition_keep_class")
    assert keep_class.uncond_masks_condition and keep_class.uncond_keeps_class
    assert not _plan(uncond_input="null_class").uncond_masks_condition
    # Editing keeps class-token guidance: the kept tokens are the picture being edited.
    keep = np.arange(N) < C
    assert editing_plan(keep, num_steps=K, model_schedule=SCHEDULE).uncond_input == "null_class"
    with pytest.raises(ValueError, match="uncond_input"):
        _plan(uncond_input="drop_everything")
    with pytest.raises(ValueError, match="needs condition tokens"):
        _plan(num_condition_tokens=0, uncond_input="masked_condition_keep_class")


@pytest.mark.parametrize("uncond_input", ["masked_condition", "masked_condition_keep_class",
                                          "null_class"])
@pytest.mark.parametrize("refresh", ["model_change", "never"])
def test_frame_prediction_matches_natural_order_reference(model, uncond_input, refresh):
    plan = _plan(refresh=refresh, uncond_input=uncond_input, **GREEDY)
    tokens = Decoder(model, plan, B, jit_compile=False).generate(
        CLASSES, [0, 0], condition_tokens=CONDITION)
    given, keep = _given()
    want = reference_decode(model, plan, CLASSES, tf.constant(given), tf.constant(keep))
    np.testing.assert_array_equal(tokens, want)
    np.testing.assert_array_equal(tokens[:, :C], CONDITION)


def _record_passes(model, monkeypatch):
    """Wraps the model's own `call_with_cache` to record every pass of an eager decode."""
    calls, real = [], model.call_with_cache

    def recording(token_ids, weights, positions=None, kv_caches=None, training=False):
        hidden, caches = real(token_ids, weights, positions, kv_caches, training=training)
        as_numpy = lambda kv: None if kv is None else [(k.numpy(), v.numpy()) for k, v in kv]
        calls.append(dict(ids=token_ids.numpy(), positions=positions.numpy(),
                          cache_in=as_numpy(kv_caches), cache_out=as_numpy(caches),
                          weights=weights))
        return hidden, caches

    monkeypatch.setattr(model, "call_with_cache", recording)
    return calls


def _branch_passes(calls, trace_log):
    """[(kind, step, pass)] with each pass cut to its branch (a joint 2B pass: two)."""
    entries, out = iter(trace_log), []
    for call in calls:
        if call["ids"].shape[0] == 2 * B:
            for kind, rows in (("cond", slice(None, B)), ("uncond", slice(B, None))):
                entry = next(entries)
                assert entry[0] == kind
                cut = lambda kv: None if kv is None else [(k[rows], v[rows]) for k, v in kv]
                out.append((kind, entry[1], dict(
                    ids=call["ids"][rows], positions=call["positions"][rows],
                    cache_in=cut(call["cache_in"]), cache_out=cut(call["cache_out"]),
                    weights=call["weights"], joint=True)))
        else:
            entry = next(entries)
            out.append((entry[0], entry[1], dict(call, joint=False)))
    assert next(entries, None) is None
    return out


@pytest.mark.parametrize("refresh", ["model_change", "never"])
def test_uncond_branch_sees_no_condition_token_and_caches_only_its_own(
        model, monkeypatch, refresh):
    plan = _plan(refresh=refresh)
    decoder = Decoder(model, plan, B, jit_compile=False)
    calls = _record_passes(model, monkeypatch)
    tf.config.run_functions_eagerly(True)
    try:
        out = decoder.generate(CLASSES, [2, 3], condition_tokens=CONDITION)
    finally:
        tf.config.run_functions_eagerly(False)
    np.testing.assert_array_equal(out[:, :C], CONDITION)
    passes = _branch_passes(calls, decoder.trace_log)
    uncond = [(k, p) for kind, k, p in passes if kind == "uncond"]
    assert [k for k, _ in uncond] == [3, 4, 5]
    # Every path of the loop is exercised: joint and separate, full and cached.
    kinds = {(p["joint"], p["cache_in"] is None) for _, p in uncond}
    assert (True, False) in kinds and (kinds & {(True, True), (False, True)})

    condition_rows = (passes[0][2]["positions"] >= 1) & (passes[0][2]["positions"] <= C)
    cond_first = passes[0][2]["ids"]
    np.testing.assert_array_equal(cond_first[condition_rows].reshape(B, C), CONDITION)
    previous_cache = None
    for step, p in uncond:
        is_condition = (p["positions"] >= 1) & (p["positions"] <= C)
        if p["cache_in"] is None:  # A full pass: the null class, mask tokens at 1..C.
            assert is_condition.sum() == B * C
            np.testing.assert_array_equal(p["ids"][is_condition], model.mask_token_id)
            np.testing.assert_array_equal(p["ids"][p["positions"] == 0], model.null_class_id)
            # Its cache is the K/V of that input, not of an input holding the condition.
            _, own = model.call_with_cache(tf.constant(p["ids"]), p["weights"],
                                           tf.constant(p["positions"]))
            rows, cols = np.nonzero(is_condition)
            shown = p["ids"].copy()
            shown[rows, cols] = CONDITION[rows, p["positions"][rows, cols] - 1]
            _, leaked = model.call_with_cache(tf.constant(shown), p["weights"],
                                              tf.constant(p["positions"]))
            for (k, v), (ok, ov), (lk, lv) in zip(p["cache_out"], own, leaked):
                np.testing.assert_allclose(k, ok.numpy(), atol=1e-5)
                np.testing.assert_allclose(v, ov.numpy(), atol=1e-5)
                assert not np.allclose(v, lv.numpy(), atol=1e-3)
        else:  # A cached pass reads exactly the buffers its own previous pass wrote.
            assert not is_condition.any()
            assert previous_cache is not None
            for (k, v), (pk, pv) in zip(p["cache_in"], previous_cache):
                np.testing.assert_array_equal(k, pk)
                np.testing.assert_array_equal(v, pv)
        previous_cache = p["cache_out"]


def test_guided_and_unguided_frame_prediction_differ(model):
    def predict(**kw):
        return Decoder(model, _plan(**kw), B, jit_compile=False).generate(
            CLASSES, [7, 8], condition_tokens=CONDITION)

    unguided = predict(guidance_scale=0.0)
    guided = predict(guidance_scale=5.0)
    class_guided = predict(guidance_scale=5.0, uncond_input="null_class")
    for tokens in (unguided, guided, class_guided):
        np.testing.assert_array_equal(tokens[:, :C], CONDITION)
    assert not np.array_equal(guided, unguided)
    assert not np.array_equal(guided, class_guided)
    np.testing.assert_array_equal(guided, predict(guidance_scale=5.0))  # deterministic


def test_xla_frame_prediction_guidance_agrees_with_eager(model):
    plan = _plan(refresh="never", **GREEDY)
    args = (CLASSES, [1, 1])
    xla = Decoder(model, plan, B).generate(*args, condition_tokens=CONDITION)
    eager = Decoder(model, plan, B, jit_compile=False).generate(*args, condition_tokens=CONDITION)
    np.testing.assert_array_equal(xla, eager)
