"""The MaskGIT bidirectional transformer (post-LN BERT), callable at any nested factor p.

Sequence layout: [class token, num_tokens grid tokens]; the first `num_condition_tokens`
grid tokens are given conditions (e.g. the first frames in frame prediction).
Vocabulary layout: [0, codebook) codes | classes | null class (CFG) | mask.
"""
import keras
import tensorflow as tf

from magnets_tf.layers.block import LAYER_NORM_EPSILON, LayerNorm, NestedTransformerBlock
from magnets_tf.layers.mlp import gelu_tanh
from magnets_tf.layers.nested import (DEFAULT_FACTORS, apply_dropout, cast_floats, flatten_rows,
                                      nested_width, unflatten_rows, validate_factors)


# Decode/compute dtype -> the Keras dtype policy of a model computing in it (variables
# stay float32 in all three).
COMPUTE_DTYPE_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
                          "float16": "mixed_float16"}


def _init():
    """A fresh truncated-normal(0.02) initializer per weight.

    Keras 3 fixes an unseeded initializer's seed when it is constructed, so one shared
    module-level instance gave every weight of the same shape identical values (token
    and position embeddings started equal) and a seed drawn at import time, outside
    `keras.utils.set_random_seed`.
    """
    return keras.initializers.TruncatedNormal(stddev=0.02)


class MaskGitTransformer(keras.Model):
    """Nested MaskGIT transformer; every sub-model p shares these weights."""

    def __init__(self, num_layers, hidden_size, num_heads, mlp_dim, codebook_size,
                 num_classes, num_tokens, num_condition_tokens=0, factors=DEFAULT_FACTORS,
                 dropout=0.1, attention_dropout=0.1, head_dim=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in dict(num_layers=num_layers, hidden_size=hidden_size,
                                num_heads=num_heads, mlp_dim=mlp_dim,
                                codebook_size=codebook_size, num_tokens=num_tokens).items():
            if int(value) <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if int(num_classes) < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes!r}")
        if not 0 <= int(num_condition_tokens) < int(num_tokens):
            raise ValueError(f"num_condition_tokens={num_condition_tokens} must be in "
                             f"[0, num_tokens={num_tokens})")
        if head_dim is None and hidden_size % num_heads:
            raise ValueError(f"num_heads={num_heads} does not divide hidden_size={hidden_size}")
        self.num_layers = int(num_layers)
        self.hidden_size = int(hidden_size)
        self.num_heads = int(num_heads)
        # head_dim defaults to d/H; standalone copies of sub-models set it to dh/p.
        self.head_dim = int(head_dim) if head_dim else self.hidden_size // self.num_heads
        self.mlp_dim = int(mlp_dim)
        self.codebook_size = int(codebook_size)
        self.num_classes = int(num_classes)
        self.num_tokens = int(num_tokens)
        self.num_condition_tokens = int(num_condition_tokens)
        self.factors = validate_factors(factors, head_dim=self.head_dim, mlp_dim=self.mlp_dim)
        self.dropout_rate = float(dropout)
        self.attention_dropout = float(attention_dropout)

        # Sub-layers share the model's dtype policy (Keras gives them the global one).
        policy = self.dtype_policy
        self.token_embedding = keras.layers.Embedding(
            self.vocab_size, self.hidden_size, embeddings_initializer=_init(), dtype=policy,
            name="token_embedding")
        self.embedding_norm = LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=policy,
                                        name="embedding_norm")
        self.embedding_dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)
        self.blocks = [
            NestedTransformerBlock(self.hidden_size, self.num_heads, self.mlp_dim,
                                   factors=self.factors, dropout=self.dropout_rate,
                                   attention_dropout=self.attention_dropout,
                                   head_dim=self.head_dim, dtype=policy, name=f"block_{i}")
            for i in range(self.num_layers)]
        self.head_dense = keras.layers.Dense(self.hidden_size, kernel_initializer=_init(),
                                             dtype=policy, name="head_dense")
        self.head_norm = LayerNorm(epsilon=LAYER_NORM_EPSILON, dtype=policy, name="head_norm")

    # Vocabulary and sequence layout.
    @property
    def vocab_size(self):
        return self.codebook_size + self.num_classes + 2

    @property
    def null_class_id(self):
        return self.codebook_size + self.num_classes

    @property
    def mask_token_id(self):
        return self.codebook_size + self.num_classes + 1

    @property
    def sequence_length(self):
        return 1 + self.num_tokens

    def class_token_ids(self, class_ids):
        """Vocabulary ids of class labels (the null class id passes through unchanged)."""
        class_ids = tf.cast(class_ids, tf.int32)
        return tf.where(class_ids == self.null_class_id, class_ids, class_ids + self.codebook_size)

    def input_ids(self, grid_tokens, class_ids):
        """[B, 1+N] sequence from grid tokens [B, N] (codes or mask id) and class ids [B]."""
        return tf.concat([self.class_token_ids(class_ids)[:, None],
                          tf.cast(grid_tokens, tf.int32)], axis=1)

    def build(self, input_shape=None):
        self.token_embedding.build((None, None))
        self.position_embedding = self.add_weight(
            name="position_embedding", shape=(self.sequence_length, self.hidden_size),
            initializer=_init())
        shape = (None, None, self.hidden_size)
        self.embedding_norm.build(shape)
        for block in self.blocks:
            block.build(shape)
        self.head_dense.build(shape)
        self.head_norm.build(shape)
        # Added to the float32 logits: never autocast to a mixed policy's compute dtype.
        self.head_bias = self.add_weight(name="head_bias", shape=(self.codebook_size,),
                                         initializer="zeros", autocast=False)
        self.built = True

    def embed(self, token_ids, positions=None, training=False, dtype=tf.float32):
        """Token + position embedding (then LN, dropout) of ids [B, Q] at positions [B, Q]
        (default: positions 0..Q-1), in `dtype` (the compute dtype)."""
        x = tf.cast(tf.gather(self.token_embedding.embeddings, token_ids), dtype)
        if positions is None:
            x = x + tf.cast(self.position_embedding[: tf.shape(token_ids)[1]][None], dtype)
        else:
            x = x + tf.cast(tf.gather(self.position_embedding, positions), dtype)
        return apply_dropout(self.embedding_dropout, self.embedding_norm(x), training)

    def fused_weights(self, factor, dtype=None):
        """Per-block `BlockWeights` of sub-model `factor`, for `call_with_cache`.

        Slicing and fusing the kernels costs a pass over the weights: a decoder builds
        them once per factor and reuses them at every step of that factor. dtype: cast
        them to it (a decoder's compute dtype; None: as read, i.e. the variables' dtype,
        or the autocast dtype inside a mixed-precision `__call__`). `call_with_cache`
        computes in the dtype of the weights it is given."""
        if not self.built:
            self.build()
        nested_width(self.head_dim, factor, self.factors)
        weights = tuple(block.fused_weights(factor) for block in self.blocks)
        return weights if dtype is None else cast_floats(weights, dtype)

    def call_with_cache(self, token_ids, weights, positions=None, kv_caches=None,
                        training=False):
        """The blocks of one sub-model (`weights` = `fused_weights(p)`) on tokens [B, Q].

        positions [B, Q]: where in the sequence each token sits (default 0..Q-1).
        kv_caches None: the tokens are the whole sequence, in any order; returns (hidden
        [B, Q, d], [(k, v)] per layer) with their keys/values [B, H, Q, w].
        kv_caches [(k, v)] per layer, [B, H, T, w']: the tokens are the last Q rows of
        the buffers, whose fresh keys/values replace those rows while the queries attend
        over all T (`NestedSelfAttention.call_with_cache`); returns the updated buffers.
        """
        if len(weights) != self.num_layers:
            raise ValueError(f"weights hold {len(weights)} blocks, expected one per layer "
                             f"({self.num_layers}): pass fused_weights(factor)")
        if kv_caches is not None:
            if len(kv_caches) != self.num_layers:
                raise ValueError(f"kv_caches has {len(kv_caches)} entries, expected one per "
                                 f"layer ({self.num_layers})")
            if positions is None:
                raise ValueError("kv_caches needs positions [B, Q] of the processed tokens")
        x = self.embed(token_ids, positions, training=training,
                       dtype=weights[0].attention.qkv_kernel.dtype)
        new_caches = []
        for i, (block, block_weights) in enumerate(zip(self.blocks, weights)):
            x, kv = block.call_with_cache(x, block_weights,
                                          None if kv_caches is None else kv_caches[i],
                                          training=training)
            new_caches.append(kv)
        return x, new_caches

    def logits(self, hidden):
        """MLM head on hidden [..., d] -> float32 logits [..., codebook_size] (tied
        embeddings). The matmuls run in hidden's dtype; softmax, losses, sampling and
        confidence ranking get float32."""
        x = flatten_rows(hidden)
        kernel, bias = cast_floats((self.head_dense.kernel, self.head_dense.bias), x.dtype)
        x = self.head_norm(gelu_tanh(tf.matmul(x, kernel) + bias))
        codes = cast_floats(self.token_embedding.embeddings[: self.codebook_size], x.dtype)
        scores = tf.cast(tf.matmul(x, codes, transpose_b=True), tf.float32)
        return unflatten_rows(scores + self.head_bias, hidden)

    def call(self, token_ids, factor=1, training=False):
        """token_ids [B, 1+N] -> logits [B, N, codebook_size] of the grid tokens."""
        if token_ids.shape[-1] is not None and token_ids.shape[-1] != self.sequence_length:
            raise ValueError(f"expected token_ids of length 1+num_tokens={self.sequence_length}, "
                             f"got shape {tuple(token_ids.shape)}")
        hidden, _ = self.call_with_cache(token_ids, self.fused_weights(factor),
                                         training=training)
        return self.logits(hidden[:, 1:])

    def num_params(self, factor=1):
        """Parameters that sub-model `factor` uses (shared embeddings, norms, head counted)."""
        if not self.built:
            self.build()
        nested_width(self.head_dim, factor, self.factors)
        total = 0
        nested_ids = set()
        for block in self.blocks:
            for dense in (block.attention.query, block.attention.key, block.attention.value,
                          block.attention.output_dense, block.mlp.intermediate,
                          block.mlp.output_dense):
                kernel, bias = dense.sliced_weights(factor)
                total += int(tf.size(kernel)) + (int(tf.size(bias)) if bias is not None else 0)
                nested_ids.update(id(w) for w in dense.weights)
        total += sum(int(tf.size(w)) for w in self.weights if id(w) not in nested_ids)
        return total

    def get_config(self):
        return dict(name=self.name, num_layers=self.num_layers, hidden_size=self.hidden_size,
                    num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                    codebook_size=self.codebook_size, num_classes=self.num_classes,
                    num_tokens=self.num_tokens, num_condition_tokens=self.num_condition_tokens,
                    factors=self.factors, dropout=self.dropout_rate,
                    attention_dropout=self.attention_dropout, head_dim=self.head_dim,
                    dtype=self.dtype_policy.name)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def with_compute_dtype(model, compute_dtype):
    """`model` computing in `compute_dtype` ("float32", "bfloat16", "float16"; None: as is).

    The model itself when it already does; otherwise a copy with the same config and
    weights under the matching policy (`COMPUTE_DTYPE_POLICIES`): a float32-trained
    model decodes in bfloat16 this way, and a mixed_bfloat16-trained one in float32."""
    if compute_dtype is None or model.compute_dtype == compute_dtype:
        return model
    if compute_dtype not in COMPUTE_DTYPE_POLICIES:
        raise ValueError(f"compute_dtype must be one of {sorted(COMPUTE_DTYPE_POLICIES)}, got "
                         f"{compute_dtype!r}")
    if not model.built:
        model.build()
    copy = type(model).from_config(
        dict(model.get_config(), dtype=COMPUTE_DTYPE_POLICIES[compute_dtype]))
    copy.build()
    copy.set_weights(model.get_weights())
    return copy
