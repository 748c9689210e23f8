"""Where the transformer task's tokens come from: token shards or in-memory arrays.

Both sources describe their vocabulary (codebook_size, num_classes), token layout (grid,
num_condition_tokens) and the tokenizer that made them, and serve
`dataset(batch_size, seed, skip_examples)`: THE endless stream of {"tokens", "label"}
batches, whose example order is a pure function of `seed`, starting after
`skip_examples` examples (what a resumed run has consumed).

`replica_batches` cuts that one stream into the per-replica batches of one input
pipeline, so every strategy trains on the same global batches: global batch s holds
examples [s * B, (s + 1) * B) of the stream and replica r (of R) the r-th of its R equal
parts, whether the replicas sit in one process (MirroredStrategy) or on several workers
(MultiWorkerMirroredStrategy, TPU pods: one pipeline per host).
"""
import math

import numpy as np
import tensorflow as tf

from magnets_tf.data import tokenized


class TokenSource:
    """Common part of the token sources: the layout a transformer trained on them has."""

    def layout(self):
        """What a transformer trained on these tokens depends on."""
        return dict(codebook_size=self.codebook_size, num_classes=self.num_classes,
                    grid=list(self.grid), num_condition_tokens=self.num_condition_tokens)


class TokenShards(TokenSource):
    """TFRecord token shards of tools/tokenize_dataset.py (`data.tokenized`): image grids
    [h, w] or clip grids [t, h, w]; video shards written for frame prediction carry their
    conditioning layout (num_condition_frames, num_condition_tokens) in metadata.json."""

    def __init__(self, path):
        self.path = str(path)
        metadata = tokenized.read_metadata(self.path)
        self.codebook_size = metadata["codebook_size"]
        self.num_classes = metadata["num_classes"]
        self.grid = tuple(metadata["grid"])
        self.tokenizer_dir = metadata["tokenizer"]
        self.num_condition_frames = metadata["num_condition_frames"]
        self.num_condition_tokens = metadata["num_condition_tokens"]

    def explain_data_error(self, error):
        """A TokenShardError naming the damaged shard behind a read `error`, or None."""
        return tokenized.explain_read_error(self.path, error)

    def dataset(self, batch_size, seed, skip_examples=0):
        return tokenized.token_dataset(
            self.path, batch_size, shuffle=True, repeat=True, seed=seed,
            expected_codebook_size=self.codebook_size, expected_grid=self.grid,
            skip_examples=skip_examples)


class TokenArrays(TokenSource):
    """Token examples held in memory, e.g. encoded video clips for frame prediction.

    tokens: int [M, *grid] (a clip's tokens flattened time-major: the first
    `num_condition_tokens` are the condition frames); class_ids: int [M].
    Epoch e visits the examples in a permutation drawn from the stateless seed (seed, e).
    """

    tokenizer_dir = ""
    num_condition_frames = 0

    def __init__(self, tokens, class_ids, codebook_size, num_classes,
                 num_condition_tokens=0):
        tokens = np.asarray(tokens)
        class_ids = np.asarray(class_ids)
        if tokens.ndim < 2 or not len(tokens) or not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be integers [examples, *grid] with at least one "
                             f"example, got {tokens.dtype} of shape {tokens.shape}")
        if class_ids.shape != (len(tokens),) or not np.issubdtype(class_ids.dtype,
                                                                  np.integer):
            raise ValueError(f"class_ids must be integers [{len(tokens)}], got "
                             f"{class_ids.dtype} of shape {class_ids.shape}")
        if tokens.min() < 0 or tokens.max() >= int(codebook_size):
            raise ValueError(f"token ids in [{tokens.min()}, {tokens.max()}] outside "
                             f"[0, codebook_size={codebook_size})")
        if class_ids.min() < 0 or class_ids.max() >= max(int(num_classes), 1):
            raise ValueError(f"class ids in [{class_ids.min()}, {class_ids.max()}] outside "
                             f"[0, num_classes={num_classes})" + (
                                 "" if num_classes else ": class-agnostic tokens need 0"))
        self.grid = tuple(tokens.shape[1:])
        if not 0 <= int(num_condition_tokens) < math.prod(self.grid):
            raise ValueError(f"num_condition_tokens={num_condition_tokens} must be in "
                             f"[0, {math.prod(self.grid)})")
        self.tokens = tokens.astype(np.int32)
        self.class_ids = class_ids.astype(np.int32)
        self.codebook_size = int(codebook_size)
        self.num_classes = int(num_classes)
        self.num_condition_tokens = int(num_condition_tokens)

    def dataset(self, batch_size, seed, skip_examples=0):
        tokens, class_ids = self.tokens, self.class_ids
        count = len(tokens)
        if not 0 < int(batch_size) <= count:
            raise ValueError(f"batch_size={batch_size} (per input pipeline) must be in "
                             f"[1, {count}]: the number of training examples")
        if int(skip_examples) < 0:
            raise ValueError(f"skip_examples must be >= 0, got {skip_examples!r}")

        def epoch_order(epoch):
            keys = tf.random.stateless_uniform([count], tf.stack([tf.cast(seed, tf.int64),
                                                                  epoch]))
            return tf.argsort(keys)

        def examples(positions):
            """The examples at these positions of the endless stream; a batch spans at
            most two epochs because batch_size <= count."""
            epochs = positions // count
            orders = tf.stack([epoch_order(epochs[0]), epoch_order(epochs[0] + 1)])
            index = tf.gather_nd(orders, tf.stack([epochs - epochs[0], positions % count], 1))
            return {"tokens": tf.gather(tokens, index), "label": tf.gather(class_ids, index)}

        return (tf.data.Dataset.range(int(skip_examples), 2 ** 62)
                .batch(int(batch_size), drop_remainder=True)
                .map(examples).prefetch(tf.data.AUTOTUNE))


def replica_batches(source, global_batch_size, seed, input_context, start_step):
    """This input pipeline's per-replica batches of `source`'s stream, from global step
    `start_step` on (see the module doc): the pipeline's replicas are a contiguous block
    of the R replicas, so it takes its block of every global batch and splits it into
    per-replica batches, which the strategy hands to its replicas in order.

    With one pipeline this is the stream batched per replica. With several, every
    pipeline reads the whole stream and keeps its block (`shard` over blocks): the cost
    of sharding examples exactly as one process would.
    """
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    pipelines = input_context.num_input_pipelines
    skip = int(start_step) * int(global_batch_size)
    if pipelines == 1:
        return source.dataset(per_replica, seed, skip_examples=skip)
    local_replicas = input_context.num_replicas_in_sync // pipelines
    blocks = source.dataset(per_replica * local_replicas, seed, skip_examples=skip)
    blocks = blocks.shard(pipelines, input_context.input_pipeline_id)
    if local_replicas == 1:
        return blocks
    return blocks.rebatch(per_replica, drop_remainder=True)
