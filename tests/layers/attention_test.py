import math

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.layers.attention import NestedSelfAttention, scatter_positions

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
    out, (k, v) = layer(tf.constant(x), factor=p)
    np.testing.assert_allclose(out.numpy(), want, atol=1e-5)
    assert k.shape == (2, 7, H, w) and v.shape == (2, 7, H, w)

    # A standalone layer with H heads of dh/p holding the sliced weights agrees too.
    standalone = NestedSelfAttention(D, H, head_dim=w, factors=(1,))
    standalone.build()
    for name, var in zip(("query", "key", "value", "output"),
                         (standalone.query, standalone.key, standalone.value,
                          standalone.output_dense)):
        kernel, bias = getattr(layer, "output_dense" if name == "output" else name).sliced_weights(p)
        var.kernel.assign(kernel)
        var.bias.assign(bias)
    np.testing.assert_allclose(standalone(tf.constant(x), factor=1)[0].numpy(), want, atol=1e-5)


@pytest.mark.parametrize("p", [1, 4])
def test_query_subset_against_kv_buffer_equals_full_forward(p):
    layer = _attention()
    rng = np.random.RandomState(1)
    x = tf.constant(rng.randn(2, 9, D).astype("float32"))
    full_out, (k_full, v_full) = layer(x, factor=p)
    positions = tf.constant([[1, 4, 8], [0, 2, 5]])
    queries = tf.gather(x, positions, batch_dims=1)
    # The buffer holds the right K/V for every other position and garbage where the
    # processed positions go (they are overwritten with fresh values). It is full-width.
    noise = tf.random.normal([2, 9, H, DH])
    k_buf = tf.concat([k_full, noise[..., DH // p:]], -1) if p > 1 else k_full
    v_buf = tf.concat([v_full, noise[..., DH // p:]], -1) if p > 1 else v_full
    mask = tf.reduce_sum(tf.one_hot(positions, 9), 1)[..., None, None] > 0
    k_buf = tf.where(mask, noise, k_buf)
    v_buf = tf.where(mask, noise, v_buf)
    out, (k, v) = layer(queries, factor=p, kv_cache=(k_buf, v_buf), query_positions=positions)
    np.testing.assert_allclose(out.numpy(), tf.gather(full_out, positions, batch_dims=1).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(k.numpy(), k_full.numpy(), atol=1e-6)
    np.testing.assert_allclose(v.numpy(), v_full.numpy(), atol=1e-6)


def test_scatter_positions():
    buf = tf.zeros([2, 4, 1])
    out = scatter_positions(buf, tf.constant([[3], [0]]), tf.constant([[[1.0]], [[2.0]]]))
    np.testing.assert_array_equal(out.numpy()[..., 0], [[0, 0, 0, 1], [2, 0, 0, 0]])


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="factor 3 does not divide head_dim=16"):
        NestedSelfAttention(D, H, factors=(1, 3))
    with pytest.raises(ValueError, match="num_heads=5 does not divide hidden_size=64"):
        NestedSelfAttention(D, 5)
    layer = _attention()
    with pytest.raises(ValueError, match="expected inputs with 64 features"):
        layer(tf.zeros([1, 3, 16]))
    with pytest.raises(ValueError, match="needs query_positions"):
        layer(tf.zeros([1, 3, D]), kv_cache=(tf.zeros([1, 5, H, DH]),) * 2)
    with pytest.raises(ValueError, match="smaller than the sub-model"):
        layer(tf.zeros([1, 3, D]), kv_cache=(tf.zeros([1, 5, H, 4]),) * 2,
              query_positions=tf.constant([[0, 1, 2]]))
    with pytest.raises(ValueError, match="not one of the configured factors"):
        layer(tf.zeros([1, 3, D]), factor=16)


def test_config_round_trip():
    layer = NestedSelfAttention(D, H, factors=(1, 2), attention_dropout=0.1, name="attn")
    clone = NestedSelfAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
