"""MaskGIT (post-LN BERT) transformer block built from nested attention and MLP."""
import keras

from magnets_tf.layers.attention import NestedSelfAttention
from magnets_tf.layers.mlp import NestedMLP
from magnets_tf.layers.nested import DEFAULT_FACTORS

LAYER_NORM_EPSILON = 1e-12


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
                                             name="attention")
        self.factors = self.attention.factors
        self.head_dim = self.attention.head_dim
        self.mlp = NestedMLP(hidden_size, mlp_dim, factors=self.factors, name="mlp")
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=LAYER_NORM_EPSILON, name="attention_norm")
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON,
                                                        name="mlp_norm")
        self.dropout = keras.layers.Dropout(self.dropout_rate)

    def build(self, input_shape=None):
        shape = (None, None, self.hidden_size)
        self.attention.build()
        self.mlp.build()
        self.attention_norm.build(shape)
        self.mlp_norm.build(shape)
        self.built = True

    def call(self, x, factor=1, kv_cache=None, query_positions=None, training=False):
        """Returns (hidden [B, Q, d], (k, v)); see `NestedSelfAttention.call`."""
        attended, kv = self.attention(x, factor=factor, kv_cache=kv_cache,
                                      query_positions=query_positions, training=training)
        x = self.attention_norm(x + self.dropout(attended, training=training))
        x = self.mlp_norm(x + self.dropout(self.mlp(x, factor=factor), training=training))
        return x, kv

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, num_heads=self.num_heads,
                      mlp_dim=self.mlp_dim, factors=self.factors, head_dim=self.head_dim,
                      dropout=self.dropout_rate,
                      attention_dropout=self.attention_dropout)
        return config
