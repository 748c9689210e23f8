"""Keras layers whose weights hold nested sub-models (width factor p)."""
from magnets_tf.layers.nested import (NestedDense, apply_dropout, cast_floats, nested_width,
                                      validate_factors)
from magnets_tf.layers.attention import AttentionWeights, NestedSelfAttention
from magnets_tf.layers.mlp import MLPWeights, NestedMLP
from magnets_tf.layers.block import BlockWeights, LayerNorm, NestedTransformerBlock
