"""Nested multi-head self-attention with optional external key/value buffers."""
import math

import keras
import tensorflow as tf

from magnets_tf.layers.nested import DEFAULT_FACTORS, NestedDense, nested_width, validate_factors


class NestedSelfAttention(keras.layers.Layer):
    """Self-attention whose sub-model p uses the first head_dim/p features of each head.

    Q, K, V kernels are [d, H, dh] (sliced on dh); the output kernel [H, dh, d] reads the
    partial features back to the full residual width d. The softmax scale uses the
    sliced head dim, so sub-model p equals a standalone attention with H heads of dh/p.

    For cached decoding, `call` accepts `kv_cache=(k, v)` buffers [B, T, H, >= dh/p] and
    `query_positions` [B, Q]: the fresh K/V of the Q given tokens are written at those
    positions, and the queries attend over all T positions of the buffer.
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
                   nested="output", factors=self.factors)
        self.query = NestedDense(**qkv, name="query")
        self.key = NestedDense(**qkv, name="key")
        self.value = NestedDense(**qkv, name="value")
        self.output_dense = NestedDense(
            in_dims=(self.num_heads, self.head_dim), out_dims=self.hidden_size,
            nested="input", factors=self.factors, name="output")
        self.dropout = keras.layers.Dropout(self.attention_dropout)

    def build(self, input_shape=None):
        for layer in (self.query, self.key, self.value, self.output_dense):
            layer.build()
        self.built = True

    def call(self, x, factor=1, kv_cache=None, query_positions=None, training=False):
        """Returns (output [B, Q, d], (k, v)): the keys/values the queries attended to.

        Without a cache those are the fresh [B, Q, H, dh/p] of `x` (what a decoder stores
        after a full pass); with a cache, the updated buffers [B, T, H, dh/p].
        """
        width = nested_width(self.head_dim, factor, self.factors)
        if x.shape[-1] != self.hidden_size:
            raise ValueError(f"{self.name}: expected inputs with {self.hidden_size} features, "
                             f"got shape {tuple(x.shape)}")
        q = self.query(x, factor=factor)
        k = self.key(x, factor=factor)
        v = self.value(x, factor=factor)
        if kv_cache is not None:
            if query_positions is None:
                raise ValueError(f"{self.name}: kv_cache needs query_positions [B, Q]")
            k = scatter_positions(_narrow(kv_cache[0], width, self.name), query_positions, k)
            v = scatter_positions(_narrow(kv_cache[1], width, self.name), query_positions, v)
        elif query_positions is not None:
            raise ValueError(f"{self.name}: query_positions given without kv_cache")
        scores = tf.einsum("bqhd,bthd->bhqt", q, k) * (1.0 / math.sqrt(width))
        probs = tf.nn.softmax(scores, axis=-1)
        probs = self.dropout(probs, training=training)
        context = tf.einsum("bhqt,bthd->bqhd", probs, v)
        return self.output_dense(context, factor=factor), (k, v)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      head_dim=self.head_dim, factors=self.factors,
                      attention_dropout=self.attention_dropout)
        return config


def _narrow(buffer, width, name):
    if buffer.shape[-1] is not None and buffer.shape[-1] < width:
        raise ValueError(f"{name}: kv_cache head dim {buffer.shape[-1]} is smaller than the "
                         f"sub-model's {width}")
    return buffer[..., :width]


def scatter_positions(buffer, positions, updates):
    """buffer [B, T, ...] with updates [B, Q, ...] written at positions [B, Q]."""
    positions = tf.cast(positions, tf.int32)
    batch = tf.shape(positions)[0]
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(positions))
    indices = tf.stack([rows, positions], axis=-1)
    return tf.tensor_scatter_nd_update(buffer, indices, tf.cast(updates, buffer.dtype))
