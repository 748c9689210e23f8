import math

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.layers.attention import NestedSelfAttention, fit_width

D, H, DH = 64, 4, 16


def _attention(**kwargs):
    layer = NestedSelfAttention(D, H, **kwargs)
    layer.build()
    return layer


def _numpy_attention(x, wq, bq, wk, bk, wv, bv, wo, bo):
    """Independent reference: multi-head attention with the given (already sliced) weights."""
    q = np.einsum("bti,ihd->bthd", x, wq) + bq
    k = np.einsum("bti,ihd->bthd", x, wk) + bk
    v = np.einsum("bti,ihd->bthd", x, wv) + bv
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    c = np.einsum("bhqk,bkhd->bqhd", s, v)
    return np.einsum("bqhd,hdo->bqo", c, wo) + bo


@pytest.mark.parametrize("p", [1, 2, 4, 8])
def test_submodel_equals_standalone_with_sliced_weights(p):
    layer = _attention()
    x = np.random.RandomState(0).randn(2, 7, D).astype("float32")
    w = DH // p
    full = {v.path.split("/")[-2] + "/" + v.name: v.numpy() for v in layer.weights}
    sliced = dict(
        wq=full["query/kernel"][..., :w], bq=full["query/bias"][..., :w],
        wk=full["key/kernel"][..., :w], bk=full["key/bias"][..., :w],
        wv=full["value/kernel"][..., :w], bv=full["value/bias"][..., :w],
        wo=full["output/kernel"][:, :w], bo=full["output/bias"])
    want = _numpy_attention(x, **sliced)
    np.testing.assert_allclose(layer(tf.constant(x), factor=p).numpy(), want, atol=1e-5)
    out, (k, v) = layer.call_with_cache(tf.constant(x), layer.fused_weights(p))
    np.testing.assert_allclose(out.numpy(), want, atol=1e-5)
    assert k.shape == (2, H, 7, w) and v.shape == (2, H, 7, w)
    np.testing.assert_allclose(
        k.numpy(), np.einsum("bti,ihd->bhtd", x, sliced["wk"]) + sliced["bk"][:, None], atol=1e-5)

    # A standalone layer with H heads of dh/p holding the sliced weights agrees too.
    standalone = NestedSelfAttention(D, H, head_dim=w, factors=(1,))
    standalone.build()
    for name, var in zip(("query", "key", "value", "output"),
                         (standalone.query, standalone.key, standalone.value,
                          standalone.output_dense)):
        kernel, bias = getattr(layer, "output_dense" if name == "output" else name).sliced_weights(p)
        var.kernel.assign(kernel)
        var.bias.assign(bias)
    np.testing.assert_allclose(standalone(tf.constant(x), factor=1).numpy(), want, atol=1e-5)


@pytest.mark.parametrize("p", [1, 2, 8])
def test_fused_weights_are_the_sliced_weights_side_by_side(p):
    layer = _attention()
    w = DH // p
    fused = layer.fused_weights(p)
    assert (fused.num_heads, fused.width) == (H, w)
    parts = [layer.query, layer.key, layer.value]
    want_kernel = np.concatenate(
        [d.kernel.numpy()[..., :w].reshape(D, H * w) for d in parts], axis=1)
    want_bias = np.concatenate([d.bias.numpy()[..., :w].reshape(H * w) for d in parts])
    # The softmax scale 1/sqrt(w) is folded into the query columns only.
    scale = np.ones(3 * H * w, np.float32)
    scale[: H * w] = 1 / math.sqrt(w)
    np.testing.assert_allclose(fused.qkv_kernel.numpy(), want_kernel * scale, rtol=1e-6)
    np.testing.assert_allclose(fused.qkv_bias.numpy(), want_bias * scale, rtol=1e-6)
    np.testing.assert_array_equal(
        fused.out_kernel.numpy(), layer.output_dense.kernel.numpy()[:, :w].reshape(H * w, D))
    np.testing.assert_array_equal(fused.out_bias.numpy(), layer.output_dense.bias.numpy())


@pytest.mark.parametrize("p", [1, 4])
def test_cached_call_on_a_suffix_equals_the_full_call(p):
    layer = _attention()
    rng = np.random.RandomState(1)
    x = tf.constant(rng.randn(2, 9, D).astype("float32"))
    weights = layer.fused_weights(p)
    full_out, (k_full, v_full) = layer.call_with_cache(x, weights)
    # The buffers hold the right K/V for the first 6 rows and garbage in the last 3 (the
    # queries' rows, overwritten with fresh values); for p > 1 they are wider than the
    # sub-model (full dh) with garbage beyond its width.
    w = DH // p
    noise = tf.random.normal([2, H, 9, DH])
    keep_row = tf.range(9)[None, None, :, None] < 6
    k_buf = tf.where(keep_row, tf.concat([k_full, noise[..., w:]], -1), noise)
    v_buf = tf.where(keep_row, tf.concat([v_full, noise[..., w:]], -1), noise)
    out, (k, v) = layer.call_with_cache(x[:, 6:], weights, kv_cache=(k_buf, v_buf))
    np.testing.assert_allclose(out.numpy(), full_out[:, 6:].numpy(), atol=1e-5)
    np.testing.assert_allclose(k.numpy(), k_full.numpy(), atol=1e-6)
    np.testing.assert_allclose(v.numpy(), v_full.numpy(), atol=1e-6)


def test_buffers_of_another_width_are_sliced_or_zero_padded():
    buffer = tf.reshape(tf.range(1.0, 25.0), [1, 2, 3, 4])
    assert fit_width(buffer, 4) is buffer
    np.testing.assert_array_equal(fit_width(buffer, 2).numpy(), buffer.numpy()[..., :2])
    padded = fit_width(buffer, 8).numpy()
    np.testing.assert_array_equal(padded[..., :4], buffer.numpy())
    np.testing.assert_array_equal(padded[..., 4:], 0)


def test_dropout_acts_on_the_attention_probabilities():
    layer = NestedSelfAttention(D, H, attention_dropout=0.5)
    layer.build()
    x = tf.random.normal([2, 5, D])
    np.testing.assert_array_equal(layer(x).numpy(), layer(x, training=False).numpy())
    assert not np.allclose(layer(x).numpy(), layer(x, training=True).numpy())


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="factor 3 does not divide head_dim=16"):
        NestedSelfAttention(D, H, factors=(1, 3))
    with pytest.raises(ValueError, match="num_heads=5 does not divide hidden_size=64"):
        NestedSelfAttention(D, 5)
    layer = _attention()
    with pytest.raises(ValueError, match="expected inputs with 64 features"):
        layer(tf.zeros([1, 3, 16]))
    with pytest.raises(ValueError, match="holds 2 rows, fewer than the 3 query tokens"):
        layer.call_with_cache(tf.zeros([1, 3, D]), layer.fused_weights(1),
                              kv_cache=(tf.zeros([1, H, 2, DH]),) * 2)
    with pytest.raises(ValueError, match="not one of the configured factors"):
        layer(tf.zeros([1, 3, D]), factor=16)


def test_config_round_trip():
    layer = NestedSelfAttention(D, H, factors=(1, 2), attention_dropout=0.1, name="attn")
    clone = NestedSelfAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
