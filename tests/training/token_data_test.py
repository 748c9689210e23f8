"""Token sources: the example stream is a pure function of the seed; skipping continues it."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.data import tokenized
from magnets_tf.training.token_data import TokenArrays, TokenShards, replica_batches


def _labels(dataset, batches):
    """The stream as a list of example ids (our labels are the example indices)."""
    return [int(v) for batch in dataset.take(batches) for v in batch["label"].numpy()]


def test_every_epoch_is_a_seeded_permutation_and_skipping_continues_the_stream():
    count = 10
    source = TokenArrays(np.zeros([count, 4], np.int32), np.arange(count), 1, count)
    stream = _labels(source.dataset(4, seed=3), 10)  # 40 examples = 4 epochs
    for epoch in range(4):
        assert sorted(stream[epoch * count:(epoch + 1) * count]) == list(range(count))
    assert stream[:count] != stream[count:2 * count]  # Reshuffled per epoch.
    assert stream == _labels(source.dataset(4, seed=3), 10)  # Pure function of the seed.
    assert stream != _labels(source.dataset(4, seed=4), 10)
    for skip in (4, 8, 13, 28):  # Within an epoch and across epoch boundaries.
        assert _labels(source.dataset(4, seed=3, skip_examples=skip), 3) == \
            stream[skip:skip + 12]


def test_batches_hold_tokens_and_labels_of_the_same_examples():
    count = 10
    tokens = np.random.default_rng(0).integers(0, 16, (count, 6))
    source = TokenArrays(tokens, np.arange(count), 16, count, num_condition_tokens=2)
    batch = next(iter(source.dataset(5, seed=0)))
    assert batch["tokens"].dtype == tf.int32 and batch["tokens"].shape == (5, 6)
    np.testing.assert_array_equal(batch["tokens"].numpy(), tokens[batch["label"].numpy()])
    assert source.grid == (6,) and source.num_condition_tokens == 2


@pytest.mark.parametrize("pipelines,replicas", [(1, 1), (1, 4), (2, 2), (2, 4), (4, 4)])
def test_replica_batches_split_the_one_stream_alike_for_any_pipeline_layout(pipelines,
                                                                         replicas):
    """Global batch s is examples [8s, 8s + 8) of the stream whether its 4 or 2 or 1
    replica parts come from one process (MirroredStrategy) or several (multi-worker)."""
    count, global_batch, start = 12, 8, 2
    source = TokenArrays(np.zeros([count, 4], np.int32), np.arange(count), 1, count)
    stream = _labels(source.dataset(global_batch, seed=5), 6)
    per_replica = global_batch // replicas
    local = replicas // pipelines
    for pipeline in range(pipelines):
        context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                             input_pipeline_id=pipeline,
                                             num_replicas_in_sync=replicas)
        got = _labels(replica_batches(source, global_batch, 5, context, start), 3 * local)
        # The strategy hands consecutive batches of a pipeline to its local replicas.
        for step in range(3):
            first = (start + step) * global_batch + pipeline * local * per_replica
            assert got[step * local * per_replica:(step + 1) * local * per_replica] == \
                stream[first:first + local * per_replica], (pipeline, step)


def test_bad_arrays_and_batches_are_clear_errors():
    tokens, labels = np.zeros([4, 6], np.int32), np.zeros(4, np.int32)
    with pytest.raises(ValueError, match="tokens must be integers"):
        TokenArrays(tokens[0], labels, 16, 3)
    with pytest.raises(ValueError, match="tokens must be integers"):
        TokenArrays(tokens.astype(np.float32), labels, 16, 3)
    with pytest.raises(ValueError, match=r"class_ids must be integers \[4\]"):
        TokenArrays(tokens, labels[:3], 16, 3)
    with pytest.raises(ValueError, match="codebook_size=16"):
        TokenArrays(tokens + 16, labels, 16, 3)
    with pytest.raises(ValueError, match="num_classes=3"):
        TokenArrays(tokens, labels + 3, 16, 3)
    with pytest.raises(ValueError, match="num_condition_tokens=6"):
        TokenArrays(tokens, labels, 16, 3, num_condition_tokens=6)
    with pytest.raises(ValueError,
                       match=r"batch_size=5 \(per input pipeline\) must be in \[1, 4\]"):
        TokenArrays(tokens, labels, 16, 3).dataset(5, seed=0)


def test_token_shards_describe_and_serve_their_data(tmp_path):
    rng = np.random.default_rng(0)
    tokenized.write_token_shards(
        str(tmp_path), [(rng.integers(0, 16, (12, 2, 3)), np.arange(12))],
        dict(codebook_size=16, grid=[2, 3], num_classes=12, tokenizer="tok"), num_shards=2,
        overwrite=True)
    source = TokenShards(tmp_path)
    assert (source.codebook_size, source.num_classes, source.grid) == (16, 12, (2, 3))
    assert source.num_condition_tokens == 0 and source.tokenizer_dir == "tok"
    stream = _labels(source.dataset(4, seed=1), 6)
    assert sorted(stream[:12]) == list(range(12))
    assert _labels(source.dataset(4, seed=1, skip_examples=8), 2) == stream[8:16]
    with pytest.raises(tokenized.TokenShardError, match="does not exist"):
        TokenShards(tmp_path / "none")


def test_video_shards_give_their_grid_and_conditioning_layout(tmp_path):
    rng = np.random.default_rng(0)
    tokenized.write_token_shards(
        str(tmp_path / "clips"), [(rng.integers(0, 16, (6, 2, 2, 3)), np.arange(6) % 3)],
        dict(codebook_size=16, grid=[2, 2, 3], num_classes=3, tokenizer="tok",
             num_condition_frames=2, num_condition_tokens=6), num_shards=1)
    source = TokenShards(tmp_path / "clips")
    assert source.grid == (2, 2, 3)
    assert (source.num_condition_frames, source.num_condition_tokens) == (2, 6)
    assert source.layout() == dict(codebook_size=16, num_classes=3, grid=[2, 2, 3],
                                   num_condition_tokens=6)
    assert next(iter(source.dataset(4, seed=0)))["tokens"].shape == (4, 2, 2, 3)
