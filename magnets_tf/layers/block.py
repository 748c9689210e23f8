"""MaskGIT (post-LN BERT) transformer block built from nested attention and MLP."""
from typing import NamedTuple

import keras
import tensorflow as tf

from magnets_tf.layers.attention import AttentionWeights, NestedSelfAttention
from magnets_tf.layers.mlp import MLPWeights, NestedMLP
from magnets_tf.layers.nested import (DEFAULT_FACTORS, apply_dropout, flatten_rows,
                                      unflatten_rows)

LAYER_NORM_EPSILON = 1e-12


class LayerNorm(keras.layers.LayerNormalization):
    """LayerNorm over the last axis: (x - mean) * rsqrt(var + eps) * gamma + beta.

    keras' layer (same gamma/beta weights and config) with the formula written out, so
    that every pass of the model (training, cached decoding) runs the same ops. Keras'
    layer does not autocast its variables: gamma and beta stay float32 under a mixed
    policy."""

    def call(self, x):
        """Statistics and affine map in float32 (the variables' dtype); the result in x's
        dtype, so bfloat16 activations stay bfloat16 (no-op casts at float32)."""
        rows = tf.cast(x, tf.float32)
        mean = tf.reduce_mean(rows, axis=-1, keepdims=True)
        centered = rows - mean
        var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
        normed = centered * tf.math.rsqrt(var + self.epsilon) * self.gamma + self.beta
        return tf.cast(normed, x.dtype)


class BlockWeights(NamedTuple):
    """Sub-model p's weights of one block (see `NestedTransformerBlock.fused_weights`)."""
    attention: AttentionWeights
    mlp: MLPWeights


class NestedTransformerBlock(keras.layers.Layer):
    """x -> LN(x + Drop(Attn_p(x))) -> LN(. + Drop(MLP_p(.))), shared across factors p."""

    def __init__(self, hidden_size, num_heads, mlp_dim, factors=DEFAULT_FACTORS,
                 dropout=0.0, attention_dropout=0.0, head_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.dropout_rate = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.attention = NestedSelfAttention(hidden_size, num_heads, head_dim=head_dim,
                                             factors=factors,
                                             attention_dropout=attention_dropout,
                                             dtype=self.dtype_policy, name="attention")
        self.factors = self.attention.factors
        self.head_dim = self.attention.head_dim
        self.mlp = NestedMLP(hidden_size, mlp_dim, factors=self.factors,
                             dtype=self.dtype_policy, name="mlp")
        self.attention_norm = LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy,
                                        name="attention_norm")
        self.mlp_norm = LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=self.dtype_policy,
                                  name="mlp_norm")
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.attention.build()
        self.mlp.build()
        self.attention_norm.build(shape)
        self.mlp_norm.build(shape)
        self.built = True

    def fused_weights(self, factor):
        """`BlockWeights` of sub-model `factor` (fused attention, sliced MLP)."""
        return BlockWeights(self.attention.fused_weights(factor),
                            self.mlp.sliced_weights(factor))

    def call(self, x, factor=1, training=False):
        """x [B, T, d] -> [B, T, d] through sub-model `factor`."""
        return self.call_with_cache(x, self.fused_weights(factor), training=training)[0]

    def call_with_cache(self, x, weights, kv_cache=None, training=False):
        """The block on tokens x [B, Q, d] with `weights` -> (hidden [B, Q, d], (k, v)).

        kv_cache and the returned key/value buffers [B, H, T, w] are those of
        `NestedSelfAttention.call_with_cache`: with buffers, x holds their last Q rows."""
        attended, kv = self.attention.call_with_cache(x, weights.attention, kv_cache,
                                                      training=training)
        h = flatten_rows(x)
        h = self.attention_norm(
            h + apply_dropout(self.dropout, flatten_rows(attended), training))
        mlp_out = self.mlp.unbiased_rows(h, weights.mlp)
        if training and self.dropout_rate:
            h = h + apply_dropout(self.dropout, mlp_out + weights.mlp.out_bias, training)
        else:
            h = h + mlp_out + weights.mlp.out_bias
        return unflatten_rows(self.mlp_norm(h), x), kv

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      mlp_dim=self.mlp_dim, factors=self.factors, head_dim=self.head_dim,
                      dropout=self.dropout_rate,
                      attention_dropout=self.attention_dropout)
        return config
