"""Token shards: round trip, atomic writing, and clear errors on bad/mismatched shards."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.data import tokenized

GRID = (4, 5)


def _batches(num_examples, codebook_size=300, batch=7, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, codebook_size, size=(num_examples, *GRID))
    labels = rng.integers(0, 10, size=num_examples)
    batches = [(tokens[i:i + batch], labels[i:i + batch]) for i in range(0, num_examples, batch)]
    return tokens, labels, batches


def _metadata(codebook_size=300):
    return dict(codebook_size=codebook_size, grid=list(GRID), num_classes=10,
                tokenizer="/models/vq")


def _write(tmp_path, num_examples=50, num_shards=3, codebook_size=300):
    tokens, labels, batches = _batches(num_examples, codebook_size)
    out = tmp_path / "shards"
    tokenized.write_token_shards(str(out), batches, _metadata(codebook_size), num_shards)
    return str(out), tokens, labels


def test_round_trip_all_examples(tmp_path):
    path, tokens, labels = _write(tmp_path)
    meta = json.load(open(os.path.join(path, "metadata.json")))
    assert meta["num_examples"] == 50 and meta["grid"] == [4, 5]
    assert meta["codebook_size"] == 300 and meta["tokenizer"] == "/models/vq"
    assert len(meta["shards"]) == 3 and meta["token_dtype"] == "uint16"
    ds = tokenized.token_dataset(path, 8, shuffle=False, repeat=False, drop_remainder=False,
                                 expected_codebook_size=300, expected_grid=GRID)
    got_tokens, got_labels = [], []
    for batch in ds:
        assert batch["tokens"].dtype == tf.int32 and batch["label"].dtype == tf.int32
        got_tokens.append(batch["tokens"].numpy())
        got_labels.append(batch["label"].numpy())
    got_tokens, got_labels = np.concatenate(got_tokens), np.concatenate(got_labels)
    assert got_tokens.shape == (50, 4, 5)
    # Order differs (round-robin shards, interleave): compare as sets of (label, tokens).
    key = lambda t, l: sorted(zip(l.tolist(), map(bytes, t.astype(np.int32))))
    assert key(got_tokens, got_labels) == key(tokens, labels)
    assert tokenized.verify_token_shards(path)["num_examples"] == 50


def test_large_codebook_uses_int32(tmp_path):
    path, tokens, labels = _write(tmp_path, num_examples=10, num_shards=1, codebook_size=70000)
    batch = next(iter(tokenized.token_dataset(path, 10, shuffle=False, repeat=False)))
    np.testing.assert_array_equal(batch["tokens"].numpy(), tokens)
    np.testing.assert_array_equal(batch["label"].numpy(), labels)


def test_training_pipeline_shapes_shuffle_repeat(tmp_path):
    path, _, _ = _write(tmp_path)
    ds = tokenized.token_dataset(path, 16, shuffle=True, repeat=True, seed=1)
    assert ds.element_spec["tokens"].shape == (16, 4, 5)
    first = [b["label"].numpy() for b in ds.take(6)]  # 96 > 50: repeats
    again = [b["label"].numpy() for b in tokenized.token_dataset(path, 16, seed=1).take(6)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))


def test_input_context_splits_pipelines(tmp_path):
    path, _, labels = _write(tmp_path, num_examples=40, num_shards=4)
    seen = 0
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                         num_replicas_in_sync=2)
        ds = tokenized.token_dataset(path, 4, shuffle=False, repeat=False,
                                     drop_remainder=False, input_context=ctx)
        seen += sum(int(b["label"].shape[0]) for b in ds)
    assert seen == 40


def test_mismatched_codebook_and_grid(tmp_path):
    path, _, _ = _write(tmp_path)
    with pytest.raises(tokenized.TokenShardError, match="codebook_size=300 .* codebook_size=512"):
        tokenized.token_dataset(path, 4, expected_codebook_size=512)
    with pytest.raises(tokenized.TokenShardError, match=r"\[4, 5\] token grid but \[8, 8\]"):
        tokenized.token_dataset(path, 4, expected_grid=(8, 8))


def test_missing_or_bad_metadata(tmp_path):
    with pytest.raises(tokenized.TokenShardError, match="does not exist"):
        tokenized.token_dataset(str(tmp_path / "nothing"), 4)
    path, _, _ = _write(tmp_path)
    meta_path = os.path.join(path, "metadata.json")
    meta = json.load(open(meta_path))
    open(meta_path, "w").write("{not json")
    with pytest.raises(tokenized.TokenShardError, match="not valid JSON"):
        tokenized.token_dataset(path, 4)
    json.dump({k: v for k, v in meta.items() if k != "grid"}, open(meta_path, "w"))
    with pytest.raises(tokenized.TokenShardError, match="lacks keys"):
        tokenized.token_dataset(path, 4)
    json.dump(dict(meta, num_examples=51), open(meta_path, "w"))
    with pytest.raises(tokenized.TokenShardError, match="differs from the sum"):
        tokenized.token_dataset(path, 4)
    os.remove(meta_path)
    with pytest.raises(tokenized.TokenShardError, match="metadata.json is missing"):
        tokenized.token_dataset(path, 4)


def test_missing_and_truncated_shard(tmp_path):
    path, _, _ = _write(tmp_path)
    shard = os.path.join(path, "tokens-00001-of-00003.tfrecord")
    data = open(shard, "rb").read()
    open(shard, "wb").write(data[:-9])
    with pytest.raises(tokenized.TokenShardError, match="truncated"):
        tokenized.token_dataset(path, 4)
    os.remove(shard)
    with pytest.raises(tokenized.TokenShardError, match="is missing"):
        tokenized.token_dataset(path, 4)


def test_bit_flip_detected_by_crc(tmp_path):
    path, _, _ = _write(tmp_path)
    shard = os.path.join(path, "tokens-00000-of-00003.tfrecord")
    data = bytearray(open(shard, "rb").read())
    data[40] ^= 0xFF  # Same size, corrupted payload.
    open(shard, "wb").write(bytes(data))
    with pytest.raises(tokenized.TokenShardError, match="00000-of-00003.tfrecord is corrupted"):
        tokenized.verify_token_shards(path)
    with pytest.raises(tf.errors.DataLossError) as caught:
        list(tokenized.token_dataset(path, 4, repeat=False))
    assert "tfrecord" not in caught.value.message  # TF names no file: explain_read_error does.
    named = tokenized.explain_read_error(path, caught.value)
    assert isinstance(named, tokenized.TokenShardError)
    assert "tokens-00000-of-00003.tfrecord is corrupted" in str(named)
    assert "re-create the shards" in str(named)


def test_read_error_of_intact_shards_is_not_blamed_on_them(tmp_path):
    path, _, _ = _write(tmp_path)
    error = tf.errors.DataLossError(None, None, "corrupted record at 12")
    assert tokenized.explain_read_error(path, error) is None


def _write_raw_shard(tmp_path, payloads, codebook_size=300):
    """A shard directory whose records hold arbitrary token payloads (bypassing checks)."""
    path = tmp_path / "raw"
    path.mkdir()
    shard = path / "tokens-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for payload in payloads:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "tokens": tf.train.Feature(bytes_list=tf.train.BytesList(value=[payload])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
            })).SerializeToString())
    meta = dict(_metadata(codebook_size), num_examples=len(payloads), token_dtype="uint16",
                format_version=1, shards=[dict(file=shard.name, num_examples=len(payloads),
                                               num_bytes=shard.stat().st_size)])
    json.dump(meta, open(path / "metadata.json", "w"))
    return str(path)


def test_out_of_range_tokens_in_shard(tmp_path):
    tokens = np.full(GRID, 299, np.uint16)
    tokens[0, 0] = 301
    path = _write_raw_shard(tmp_path, [tokens.tobytes()])
    with pytest.raises(tf.errors.InvalidArgumentError, match="token id >= codebook_size=300"):
        list(tokenized.token_dataset(path, 1, repeat=False))
    with pytest.raises(tokenized.TokenShardError, match="codebook_size=300"):
        tokenized.verify_token_shards(path)


def test_wrong_record_length_in_shard(tmp_path):
    path = _write_raw_shard(tmp_path, [np.zeros(7, np.uint16).tobytes()])
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not hold 4x5 uint16"):
        list(tokenized.token_dataset(path, 1, repeat=False))


def test_writer_rejects_bad_batches_and_leaves_nothing(tmp_path):
    out = tmp_path / "shards"
    bad_tokens = np.full((2, *GRID), 300)  # == codebook_size
    with pytest.raises(ValueError, match="outside \\[0, codebook_size=300\\)"):
        tokenized.write_token_shards(str(out), [(bad_tokens, np.zeros(2))], _metadata(), 2)
    with pytest.raises(ValueError, match="tokens shape"):
        tokenized.write_token_shards(str(out), [(np.zeros((2, 3, 3)), np.zeros(2))],
                                     _metadata(), 2)
    with pytest.raises(ValueError, match="labels in"):
        tokenized.write_token_shards(str(out), [(np.zeros((2, *GRID)), np.array([0, 10]))],
                                     _metadata(), 2)
    assert os.listdir(tmp_path) == []  # No partial output, no temp dirs left.


def test_interrupted_write_keeps_previous_data(tmp_path):
    path, tokens, labels = _write(tmp_path, num_examples=20, num_shards=2)

    def failing_batches():
        yield tokens[:5], labels[:5]
        raise KeyboardInterrupt("preempted")

    with pytest.raises(FileExistsError):
        tokenized.write_token_shards(path, [], _metadata(), 2)
    with pytest.raises(KeyboardInterrupt):
        tokenized.write_token_shards(path, failing_batches(), _metadata(), 2, overwrite=True)
    assert tokenized.verify_token_shards(path)["num_examples"] == 20
    assert sorted(os.listdir(tmp_path)) == ["shards"]
    tokenized.write_token_shards(path, [(tokens[:6], labels[:6])], _metadata(), 2,
                                 overwrite=True)
    assert tokenized.verify_token_shards(path)["num_examples"] == 6
    assert sorted(os.listdir(tmp_path)) == ["shards"]


def test_skip_examples_resumes_the_same_stream(tmp_path):
    path, _, _ = _write(tmp_path, num_examples=30, num_shards=3)
    full = np.concatenate([b["tokens"].numpy() for b in
                           tokenized.token_dataset(path, 4, seed=5).take(20)])
    for skip in (8, 32, 60):  # inside epoch 0, inside epoch 1, whole epochs skipped
        part = np.concatenate([b["tokens"].numpy() for b in
                               tokenized.token_dataset(path, 4, seed=5,
                                                       skip_examples=skip).take(3)])
        np.testing.assert_array_equal(part, full[skip:skip + 12])
    # Epochs are shuffled differently, and every epoch holds every example once.
    assert not np.array_equal(full[:30], full[30:60])
    key = lambda t: sorted(map(bytes, t.astype(np.int32)))
    assert key(full[:30]) == key(full[30:60])


VIDEO_GRID = (3, 2, 4)  # [t, h, w]


def _video_metadata(**layout):
    return dict(codebook_size=64, grid=list(VIDEO_GRID), num_classes=5, tokenizer="/models/v",
                **layout)


def test_video_shards_round_trip_tokens_labels_and_layout(tmp_path):
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 64, size=(21, *VIDEO_GRID))
    labels = rng.integers(0, 5, size=21)
    path = str(tmp_path / "clips")
    layout = dict(num_condition_frames=5, num_condition_tokens=16)  # 2 latent frames of 8
    written = tokenized.write_token_shards(
        path, [(tokens[:10], labels[:10]), (tokens[10:], labels[10:])],
        _video_metadata(**layout), num_shards=2)
    assert written["grid"] == [3, 2, 4] and written["num_examples"] == 21
    meta = tokenized.verify_token_shards(path, expected_codebook_size=64,
                                         expected_grid=VIDEO_GRID)
    assert (meta["num_condition_frames"], meta["num_condition_tokens"]) == (5, 16)
    assert [s["num_examples"] for s in meta["shards"]] == [11, 10]
    # Each record holds 3*2*4 uint16 tokens: the shard sizes follow from the counts.
    ds = tokenized.token_dataset(path, 21, shuffle=False, repeat=False,
                                 expected_grid=VIDEO_GRID, drop_remainder=False)
    batch = next(iter(ds))
    assert batch["tokens"].shape == (21, 3, 2, 4)
    key = lambda t, l: sorted(zip(l.tolist(), map(bytes, t.astype(np.int32))))
    assert key(batch["tokens"].numpy(), batch["label"].numpy()) == key(tokens, labels)
    # Generation shards (no layout given) record 0 and 0.
    generation = tokenized.write_token_shards(str(tmp_path / "gen"), [(tokens, labels)],
                                              _video_metadata(), num_shards=1)
    assert (generation["num_condition_frames"], generation["num_condition_tokens"]) == (0, 0)


@pytest.mark.parametrize("layout, message", [
    (dict(num_condition_frames=4, num_condition_tokens=0), "must both be 0"),
    (dict(num_condition_frames=0, num_condition_tokens=8), "must both be 0"),
    (dict(num_condition_frames=4, num_condition_tokens=12), "whole latent frames"),
    (dict(num_condition_frames=4, num_condition_tokens=24), "fewer than t\\*h\\*w"),
    (dict(num_condition_frames=-1, num_condition_tokens=-8), "must both be 0"),
    (dict(num_condition_frames="two", num_condition_tokens=8), "must be integers"),
])
def test_bad_conditioning_layout_is_refused(tmp_path, layout, message):
    tokens = np.zeros((2, *VIDEO_GRID), np.int32)
    with pytest.raises(ValueError, match=message):
        tokenized.write_token_shards(str(tmp_path / "x"), [(tokens, [0, 1])],
                                     _video_metadata(**layout), num_shards=1)
    assert not os.path.exists(tmp_path / "x")


def test_condition_layout_needs_a_video_grid_and_damaged_metadata_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"\[t, h, w\] token grid.*\[4, 5\]"):
        tokenized.write_token_shards(
            str(tmp_path / "x"), [(np.zeros((1, *GRID), np.int32), [0])],
            dict(_metadata(), num_condition_frames=1, num_condition_tokens=5), num_shards=1)
    with pytest.raises(ValueError, match=r"grid=\[1, 2, 3, 4\] a positive \[h, w\]"):
        tokenized.write_token_shards(str(tmp_path / "x"), [], dict(_metadata(),
                                                                   grid=[1, 2, 3, 4]), 1)
    path = str(tmp_path / "clips")
    tokenized.write_token_shards(path, [(np.zeros((2, *VIDEO_GRID), np.int32), [0, 1])],
                                 _video_metadata(num_condition_frames=4,
                                                 num_condition_tokens=8), num_shards=1)
    meta_path = os.path.join(path, "metadata.json")
    meta = json.load(open(meta_path))
    json.dump(dict(meta, num_condition_tokens=12), open(meta_path, "w"))
    with pytest.raises(tokenized.TokenShardError,
                       match=f"{meta_path}: bad metadata: num_condition_tokens=12 must be "
                             f"whole latent frames"):
        tokenized.verify_token_shards(path)
    # A [t, h, w] record read against another grid names the mismatch.
    json.dump(dict(meta, grid=[3, 2, 2]), open(meta_path, "w"))
    with pytest.raises(tokenized.TokenShardError, match=r"\[3, 2, 2\] token grid but"):
        tokenized.read_metadata(path, expected_grid=VIDEO_GRID)
    with pytest.raises(tokenized.TokenShardError, match="does not hold 3x2x2 uint16 tokens"):
        tokenized.verify_token_shards(path)


def test_class_agnostic_shards_need_label_zero(tmp_path):
    tokens = np.zeros((2, *VIDEO_GRID), np.int32)
    with pytest.raises(ValueError, match="num_classes=0 \\(class-agnostic\\) needs every "
                                         "label 0"):
        tokenized.write_token_shards(str(tmp_path / "x"), [(tokens, [0, 3])],
                                     dict(_video_metadata(), num_classes=0), num_shards=1)
    meta = tokenized.write_token_shards(str(tmp_path / "y"), [(tokens, [0, 0])],
                                        dict(_video_metadata(), num_classes=0), num_shards=1)
    assert meta["num_classes"] == 0
