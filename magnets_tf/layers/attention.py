"""Nested multi-head self-attention: one implementation for training and cached decoding."""
import math
from typing import NamedTuple

import keras
import tensorflow as tf

from magnets_tf.layers.nested import (DEFAULT_FACTORS, NestedDense, apply_dropout, flatten_rows,
                                      nested_width, unflatten_rows, validate_factors)


class AttentionWeights(NamedTuple):
    """Sub-model p's attention weights in the form the forward pass multiplies with.

    qkv_kernel [d, 3*H*w] holds the query, key and value kernels side by side, with the
    softmax scale 1/sqrt(w) folded into the query columns (qkv_bias [3*H*w] likewise):
    one matmul yields all three projections. out_kernel [H*w, d], out_bias [d].
    """
    num_heads: int
    width: int
    qkv_kernel: tf.Tensor
    qkv_bias: tf.Tensor
    out_kernel: tf.Tensor
    out_bias: tf.Tensor


class NestedSelfAttention(keras.layers.Layer):
    """Self-attention whose sub-model p uses the first head_dim/p features of each head.

    Q, K, V kernels are [d, H, dh] (sliced on dh); the output kernel [H, dh, d] reads the
    partial features back to the full residual width d. The softmax scale uses the
    sliced head dim, so sub-model p equals a standalone attention with H heads of dh/p.

    `call` is the plain layer; `call_with_cache` is the same computation on given
    `fused_weights(p)` that also reads and writes external key/value buffers, for
    cached decoding.
    """

    def __init__(self, hidden_size, num_heads, head_dim=None, factors=DEFAULT_FACTORS,
                 attention_dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_size <= 0 or num_heads <= 0:
            raise ValueError(f"hidden_size and num_heads must be positive, got "
                             f"hidden_size={hidden_size}, num_heads={num_heads}")
        if head_dim is None:
            if hidden_size % num_heads:
                raise ValueError(f"num_heads={num_heads} does not divide hidden_size={hidden_size}")
            head_dim = hidden_size // num_heads
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.head_dim = int(head_dim)
        self.factors = validate_factors(factors, head_dim=self.head_dim)
        self.attention_dropout = float(attention_dropout)
        qkv = dict(in_dims=self.hidden_size, out_dims=(self.num_heads, self.head_dim),
                   nested="output", factors=self.factors, dtype=self.dtype_policy)
        self.query = NestedDense(**qkv, name="query")
        self.key = NestedDense(**qkv, name="key")
        self.value = NestedDense(**qkv, name="value")
        self.output_dense = NestedDense(
            in_dims=(self.num_heads, self.head_dim), out_dims=self.hidden_size,
            nested="input", factors=self.factors, dtype=self.dtype_policy, name="output")
        self.dropout = keras.layers.Dropout(self.attention_dropout, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        for layer in (self.query, self.key, self.value, self.output_dense):
            layer.build()
        self.built = True

    def fused_weights(self, factor):
        """`AttentionWeights` of sub-model `factor`: sliced, fused and pre-scaled.

        A decoder computes them once per factor and reuses them at every step."""
        width = nested_width(self.head_dim, factor, self.factors)
        d, heads = self.hidden_size, self.num_heads
        scale = 1.0 / math.sqrt(width)
        kernels, biases = [], []
        for dense, s in ((self.query, scale), (self.key, 1.0), (self.value, 1.0)):
            kernel, bias = dense.sliced_weights(factor)
            kernels.append(tf.reshape(kernel, [d, heads * width]) * s)
            biases.append(tf.reshape(bias, [heads * width]) * s)
        out_kernel, out_bias = self.output_dense.sliced_weights(factor)
        return AttentionWeights(
            num_heads=heads, width=width, qkv_kernel=tf.concat(kernels, axis=1),
            qkv_bias=tf.concat(biases, axis=0),
            out_kernel=tf.reshape(out_kernel, [heads * width, d]), out_bias=out_bias)

    def call(self, x, factor=1, training=False):
        """x [B, T, d] -> [B, T, d]: sub-model `factor` attending over all T tokens."""
        return self.call_with_cache(x, self.fused_weights(factor), training=training)[0]

    def call_with_cache(self, x, weights, kv_cache=None, training=False):
        """Attention of the Q tokens x [B, Q, d] with `weights` (see `fused_weights`).

        kv_cache None: the Q tokens are the whole sequence; returns (output [B, Q, d],
        (k, v)) with their keys/values k, v [B, H, Q, w].
        kv_cache (k, v) buffers [B, H, T, w'] (T >= Q): the Q tokens are the LAST Q rows
        of the buffers. Their fresh keys/values replace those rows (a static slice and
        concat: a decoder keeps its sequences in an order where the tokens it processes
        are a suffix), the queries attend over all T rows, and the updated buffers
        [B, H, T, w] are returned. Buffers of another width w' are sliced to w, or
        zero-padded when a plan changes the factor without refreshing them.
        """
        if x.shape[-1] != self.hidden_size:
            raise ValueError(f"{self.name}: expected inputs with {self.hidden_size} features, "
                             f"got shape {tuple(x.shape)}")
        heads, width = weights.num_heads, weights.width
        queries = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
        qkv = tf.matmul(flatten_rows(x), weights.qkv_kernel) + weights.qkv_bias
        qkv = tf.transpose(tf.reshape(qkv, [-1, queries, 3, heads, width]), [2, 0, 3, 1, 4])
        # Unstacked, not indexed: the gradient of one unstack is one stack, where three
        # strided slices would each write a zero-filled [3, B, H, Q, w] tensor and add them
        # (14% of a 6x128 training step's op time in a profile on a loaded machine; 1.02x
        # steps/s measured idle, docs/results.md).
        query, key, value = tf.unstack(qkv, num=3, axis=0)  # [B, H, Q, w]
        if kv_cache is not None:
            old_key, old_value = (fit_width(buffer, width) for buffer in kv_cache)
            prefix = _cached_rows(old_key, x, self.name)
            key = tf.concat([old_key[:, :, :prefix], key], axis=2)
            value = tf.concat([old_value[:, :, :prefix], value], axis=2)
        # Softmax normalised after the value matmul: one pass less over [Q, T]. Dropout
        # of the unnormalised weights equals dropout of the probabilities (it is linear).
        # The matmuls run in the compute dtype (x's); the exponentials and their sums in
        # float32 (the casts vanish at float32).
        scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32)
        probs = tf.exp(scores - tf.reduce_max(scores, axis=-1, keepdims=True))
        weighted = tf.matmul(apply_dropout(self.dropout, tf.cast(probs, x.dtype), training),
                             value)
        context = tf.cast(tf.cast(weighted, tf.float32) * tf.math.reciprocal(
            tf.reduce_sum(probs, axis=-1, keepdims=True)), x.dtype)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [-1, heads * width])
        output = tf.matmul(context, weights.out_kernel) + weights.out_bias
        return unflatten_rows(output, x), (key, value)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      head_dim=self.head_dim, factors=self.factors,
                      attention_dropout=self.attention_dropout)
        return config


def fit_width(buffer, width):
    """A key/value buffer [B, H, T, w'] at width w: sliced, or zero-padded if w' < w."""
    have = buffer.shape[-1]
    if have == width:
        return buffer
    if have > width:
        return buffer[..., :width]
    return tf.pad(buffer, [[0, 0], [0, 0], [0, 0], [0, width - have]])


def _cached_rows(buffer, x, name):
    """Rows of a [B, H, T, w] buffer that the Q queries x [B, Q, d] do not replace."""
    total, queries = buffer.shape[2], x.shape[1]
    if total is None or queries is None:
        raise ValueError(f"{name}: kv_cache needs static sequence lengths, got buffers of "
                         f"shape {tuple(buffer.shape)} and inputs {tuple(x.shape)}")
    if total < queries:
        raise ValueError(f"{name}: kv_cache holds {total} rows, fewer than the {queries} "
                         f"query tokens")
    return total - queries
