"""Pre-tokenized data: TFRecord shards of (token grid, label) plus metadata.json.

A data set is encoded by the tokenizer once (tools/tokenize_dataset.py) and read many
times by the transformer trainer, so the reader is built for speed: parallel interleave
over shards, cached serialized records, vectorized parsing per batch, prefetch.

Layout of a shard directory:
  metadata.json                     codebook_size, grid ([h, w] for images, [t, h, w] for
                                    video clips), num_classes, num_examples, tokenizer,
                                    num_condition_frames, num_condition_tokens,
                                    token_dtype, shards [{file, num_examples, num_bytes}],
                                    format_version
  tokens-00000-of-00004.tfrecord    tf.train.Example: "tokens" (raw little-endian bytes of
                                    prod(grid) ints in token_dtype, row-major; time-major
                                    for clips), "label" (int64)

Conditioning layout (frame prediction): the first `num_condition_tokens` tokens of an
example (whole latent frames of a [t, h, w] grid) encode its first
`num_condition_frames` pixel frames, with the later frames hidden; both are 0 for
generation, and for shards written before these fields existed.
"""
import json
import math
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from magnets_tf.utils import errors

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("codebook_size", "grid", "num_classes", "num_examples", "tokenizer")


class TokenShardError(ValueError):
    """Shards or metadata are missing, corrupted or do not match what the caller expects."""


def _token_dtype(codebook_size):
    return "uint16" if codebook_size <= 2 ** 16 else "int32"


def _as_batch(batch):
    if isinstance(batch, dict):
        return np.asarray(batch["tokens"]), np.asarray(batch["label"])
    tokens, labels = batch
    return np.asarray(tokens), np.asarray(labels)


def _validated_metadata(metadata):
    metadata = dict(metadata)
    for key in ("codebook_size", "grid", "num_classes"):
        if key not in metadata:
            raise ValueError(f"metadata needs {key!r} (have {sorted(metadata)})")
    codebook_size = int(metadata["codebook_size"])
    grid = [int(g) for g in metadata["grid"]]
    if codebook_size <= 0 or len(grid) not in (2, 3) or min(grid) <= 0:
        raise ValueError(f"metadata codebook_size={metadata['codebook_size']!r} must be "
                         f"positive and grid={metadata['grid']!r} a positive [h, w] "
                         f"(images) or [t, h, w] (video)")
    if int(metadata["num_classes"]) < 0:
        raise ValueError(f"metadata num_classes={metadata['num_classes']!r} must be >= 0")
    condition_frames, condition_tokens = _condition_layout(metadata, grid)
    metadata.update(codebook_size=codebook_size, grid=grid,
                    num_classes=int(metadata["num_classes"]),
                    tokenizer=str(metadata.get("tokenizer", "")),
                    num_condition_frames=condition_frames,
                    num_condition_tokens=condition_tokens)
    return metadata


def _condition_layout(metadata, grid):
    """(num_condition_frames, num_condition_tokens) of metadata, validated against grid:
    both 0 (generation), or frame prediction on a [t, h, w] grid whose first condition
    tokens are whole latent frames, fewer than all, with at least one pixel frame."""
    frames = metadata.get("num_condition_frames", 0)
    tokens = metadata.get("num_condition_tokens", 0)
    try:
        frames, tokens = int(frames), int(tokens)
    except (TypeError, ValueError):
        raise ValueError(f"num_condition_frames={frames!r} and num_condition_tokens="
                         f"{tokens!r} must be integers") from None
    if (frames == 0) != (tokens == 0) or frames < 0 or tokens < 0:
        raise ValueError(f"num_condition_frames={frames} and num_condition_tokens={tokens} "
                         f"must both be 0 (generation) or both positive (frame prediction)")
    if tokens:
        frame_tokens = grid[1] * grid[2] if len(grid) == 3 else None
        if frame_tokens is None or tokens % frame_tokens or tokens >= grid[0] * frame_tokens:
            raise ValueError(f"num_condition_tokens={tokens} must be whole latent frames of a "
                             f"[t, h, w] token grid (a multiple of h*w, fewer than t*h*w); "
                             f"the grid is {grid}")
    return frames, tokens


def write_token_shards(out_dir, batches, metadata, num_shards, overwrite=False):
    """Writes token batches into `num_shards` TFRecord files + metadata.json, atomically.

    batches: iterable of (tokens int [B, *grid], labels int [B]) or dicts with "tokens"
    and "label". metadata: codebook_size, grid ([h, w] or [t, h, w]), num_classes,
    tokenizer (path of the tokenizer model dir), optionally num_condition_frames and
    num_condition_tokens (frame prediction; see the module doc); num_examples is counted
    here. With num_classes == 0 (class-agnostic) every label must be 0. Everything is
    written into a temporary sibling directory that is renamed to `out_dir` only when
    complete, so an interrupted run never leaves a half-written data set behind. Returns
    the metadata.
    """
    metadata = _validated_metadata(metadata)
    num_shards = int(num_shards)
    if num_shards <= 0:
        raise ValueError(f"num_shards must be positive, got {num_shards}")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    codebook_size, grid = metadata["codebook_size"], metadata["grid"]
    num_classes = metadata["num_classes"]
    dtype = np.dtype(_token_dtype(codebook_size)).newbyteorder("<")
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        names = [f"tokens-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
        writers = [tf.io.TFRecordWriter(os.path.join(tmp_dir, n)) for n in names]
        counts = [0] * num_shards
        total = 0
        try:
            for batch_index, batch in enumerate(batches):
                tokens, labels = _as_batch(batch)
                if tokens.ndim != 1 + len(grid) or list(tokens.shape[1:]) != grid:
                    raise ValueError(f"batch {batch_index}: tokens shape {tokens.shape}, "
                                     f"expected [B, {', '.join(map(str, grid))}]")
                if labels.shape != (tokens.shape[0],):
                    raise ValueError(f"batch {batch_index}: labels shape {labels.shape}, "
                                     f"expected ({tokens.shape[0]},)")
                if tokens.size and (tokens.min() < 0 or tokens.max() >= codebook_size):
                    raise ValueError(f"batch {batch_index}: token ids in "
                                     f"[{tokens.min()}, {tokens.max()}] outside "
                                     f"[0, codebook_size={codebook_size})")
                if labels.size and (labels.min() < 0 or
                                    labels.max() >= max(num_classes, 1)):
                    raise ValueError(
                        f"batch {batch_index}: labels in [{labels.min()}, {labels.max()}] "
                        f"outside [0, num_classes={num_classes})" if num_classes else
                        f"batch {batch_index}: labels in [{labels.min()}, {labels.max()}] "
                        f"but num_classes=0 (class-agnostic) needs every label 0")
                for example_tokens, label in zip(tokens.astype(dtype), labels):
                    example = tf.train.Example(features=tf.train.Features(feature={
                        "tokens": tf.train.Feature(bytes_list=tf.train.BytesList(
                            value=[example_tokens.tobytes()])),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(
                            value=[int(label)])),
                    }))
                    shard = total % num_shards
                    writers[shard].write(example.SerializeToString())
                    counts[shard] += 1
                    total += 1
        finally:
            for writer in writers:
                writer.close()
        if total == 0:
            raise ValueError("batches yielded no examples")
        metadata.update(
            num_examples=total, token_dtype=dtype.name, format_version=FORMAT_VERSION,
            shards=[dict(file=n, num_examples=c,
                         num_bytes=os.path.getsize(os.path.join(tmp_dir, n)))
                    for n, c in zip(names, counts)])
        with open(os.path.join(tmp_dir, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.rename(out_dir, os.path.join(old, "data"))
            os.rename(tmp_dir, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return metadata


def read_metadata(path, expected_codebook_size=None, expected_grid=None):
    """Validated metadata of a shard directory; TokenShardError naming what is wrong."""
    meta_path = os.path.join(path, METADATA_FILE)
    if not os.path.isdir(path):
        raise TokenShardError(f"token shard directory {path} does not exist: write it with "
                              f"tools/tokenize_dataset.py")
    try:
        with open(meta_path) as f:
            metadata = json.load(f)
    except FileNotFoundError:
        raise TokenShardError(f"{meta_path} is missing: {path} is not a token shard "
                              f"directory (or its writing was interrupted)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenShardError(f"{meta_path} is not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise TokenShardError(f"{meta_path} must hold a JSON object")
    missing = [k for k in (*_REQUIRED_KEYS, "shards", "token_dtype") if k not in metadata]
    if missing:
        raise TokenShardError(f"{meta_path} lacks keys {missing}")
    try:
        metadata = _validated_metadata(metadata)
        if metadata["token_dtype"] not in ("uint16", "int32"):
            raise ValueError(f"token_dtype {metadata['token_dtype']!r} is not uint16/int32")
        shards = metadata["shards"]
        if not shards or not all(isinstance(s, dict) and {"file", "num_examples", "num_bytes"}
                                 <= set(s) for s in shards):
            raise ValueError("shards must be a non-empty list of {file, num_examples, "
                             "num_bytes}")
        if sum(int(s["num_examples"]) for s in shards) != int(metadata["num_examples"]):
            raise ValueError(f"num_examples={metadata['num_examples']} differs from the sum "
                             f"over shards")
    except (ValueError, TypeError) as e:
        raise TokenShardError(f"{meta_path}: bad metadata: {e}") from None
    if expected_codebook_size is not None and \
            metadata["codebook_size"] != int(expected_codebook_size):
        raise TokenShardError(
            f"{path}: shards hold codebook_size={metadata['codebook_size']} tokens but "
            f"codebook_size={expected_codebook_size} is expected (tokenizer "
            f"{metadata['tokenizer']!r}): re-tokenize or fix the config")
    if expected_grid is not None and metadata["grid"] != [int(g) for g in expected_grid]:
        raise TokenShardError(
            f"{path}: shards hold a {metadata['grid']} token grid but "
            f"{list(expected_grid)} is expected (tokenizer {metadata['tokenizer']!r})")
    for shard in metadata["shards"]:
        file = os.path.join(path, shard["file"])
        if not os.path.exists(file):
            raise TokenShardError(f"shard {file} listed in {meta_path} is missing")
        size = os.path.getsize(file)
        if size != int(shard["num_bytes"]):
            raise TokenShardError(f"shard {file} has {size} bytes but {meta_path} records "
                                  f"{shard['num_bytes']}: truncated or overwritten")
    return metadata


def shard_files(path, metadata):
    return [os.path.join(path, s["file"]) for s in metadata["shards"]]


def verify_token_shards(path, expected_codebook_size=None, expected_grid=None):
    """Reads every record once: CRCs, example counts, token lengths and ranges.

    Slower than `token_dataset`'s open-time checks (which read only metadata and file
    sizes); returns the metadata or raises TokenShardError naming the bad shard.
    """
    metadata = read_metadata(path, expected_codebook_size, expected_grid)
    parse = _parser(metadata, path)
    for shard, file in zip(metadata["shards"], shard_files(path, metadata)):
        count = 0
        try:
            for batch in tf.data.TFRecordDataset(file).batch(1024).map(parse):
                count += int(tf.shape(batch["label"])[0])
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise TokenShardError(f"shard {file} is corrupted ({errors.first_line(e)}): "
                                  f"re-create the shards with tools/tokenize_dataset.py") \
                from None
        if count != int(shard["num_examples"]):
            raise TokenShardError(f"shard {file} holds {count} examples, metadata says "
                                  f"{shard['num_examples']}")
    return metadata


def explain_read_error(path, error):
    """A TokenShardError naming the shard behind `error` (a tf.errors.OpError raised while
    training read the shards of `path`), or None if the shards are intact.

    TFRecord readers check every record's CRC, so a damaged shard fails with a bare
    "corrupted record at <offset>" that names no file; this re-reads the shards once
    (`verify_token_shards`) to find the bad one. Called only after a read failed, so
    healthy runs pay nothing.
    """
    try:
        verify_token_shards(path)
    except TokenShardError as shard_error:
        return shard_error
    message = getattr(error, "message", str(error)).strip().splitlines()
    if any("token shards in" in line for line in message):
        return TokenShardError(message[0])
    return None


def _parser(metadata, path):
    """Vectorized parser of a batch of serialized examples -> {"tokens", "label"}."""
    grid = list(metadata["grid"])
    codebook_size = metadata["codebook_size"]
    out_type = tf.uint16 if metadata["token_dtype"] == "uint16" else tf.int32
    num_bytes = math.prod(grid) * out_type.size
    shape_text = "x".join(map(str, grid))
    spec = {"tokens": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        lengths = tf.strings.length(features["tokens"])
        checks = [tf.debugging.assert_equal(
            lengths, num_bytes,
            message=f"token shards in {path}: a record does not hold {shape_text} "
                    f"{out_type.name} tokens (corrupted or mismatched shard)")]
        with tf.control_dependencies(checks):
            tokens = tf.io.decode_raw(features["tokens"], out_type, little_endian=True)
        tokens = tf.cast(tokens, tf.int32)
        checks = [tf.debugging.assert_less(
            tokens, codebook_size,
            message=f"token shards in {path}: token id >= codebook_size={codebook_size}"),
                  tf.debugging.assert_non_negative(
            tokens, message=f"token shards in {path}: negative token id")]
        with tf.control_dependencies(checks):
            tokens = tf.reshape(tokens, [-1, *grid])
        tokens.set_shape([serialized.shape[0], *grid])  # Keep a static batch size.
        return {"tokens": tokens, "label": tf.cast(features["label"], tf.int32)}

    return parse


def _pipeline_example_count(metadata, input_context, record_level_shard):
    """Examples this input pipeline reads in one epoch."""
    counts = [int(shard["num_examples"]) for shard in metadata["shards"]]
    if input_context is None or input_context.num_input_pipelines == 1:
        return sum(counts)
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if record_level_shard:
        total = sum(counts)
        return (total - i + n - 1) // n
    return sum(counts[i::n])


def token_dataset(path, batch_size, shuffle=True, repeat=True, seed=0,
                  expected_codebook_size=None, expected_grid=None, cache=True,
                  drop_remainder=True, shuffle_buffer=50_000, input_context=None,
                  skip_examples=0):
    """tf.data of {"tokens": int32 [B, *grid], "label": int32 [B]} from a shard directory.

    Opening validates metadata.json (keys, codebook size and grid against the expected
    ones, shard files present with their recorded sizes); record CRCs and token ranges
    are checked while reading. `cache` keeps the serialized records in memory after the
    first pass. `input_context` (from distribute_datasets_from_function) gives each input
    pipeline its own part of the shards; batch_size is then the per-replica batch.

    The example order is a pure function of `seed`: epoch e permutes blocks of
    `shuffle_buffer` records with its own stateless seed, so `skip_examples` (examples
    this pipeline already consumed, e.g. step * batch on a resumed run) restarts exactly
    where an uninterrupted run would be, skipping whole epochs without reading them.
    """
    if int(batch_size) <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    if int(skip_examples) < 0:
        raise ValueError(f"skip_examples must be >= 0, got {skip_examples!r}")
    metadata = read_metadata(path, expected_codebook_size, expected_grid)
    files = shard_files(path, metadata)
    records = tf.data.Dataset.from_tensor_slices(files)
    record_level_shard = False
    if input_context is not None and input_context.num_input_pipelines > 1:
        if len(files) >= input_context.num_input_pipelines:
            records = records.shard(input_context.num_input_pipelines,
                                    input_context.input_pipeline_id)
        else:
            record_level_shard = True
    records = records.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if record_level_shard:
        records = records.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    if cache:
        records = records.cache()
    epoch_size = _pipeline_example_count(metadata, input_context, record_level_shard)
    buffer = max(1, min(int(shuffle_buffer), epoch_size))
    skip_examples = int(skip_examples)

    def epoch(index):
        """Epoch `index`: blocks of `buffer` records, each permuted by stateless keys of
        (seed, epoch, block), so no op depends on TF's global seed or iteration state."""
        if not shuffle:
            return records

        def permute(block_index, block):
            seed_pair = tf.stack([tf.cast(seed, tf.int64),
                                  tf.cast(index, tf.int64) * 1_000_003 + block_index])
            keys = tf.random.stateless_uniform(tf.shape(block)[:1], seed=seed_pair)
            return tf.gather(block, tf.argsort(keys))

        return records.batch(buffer).enumerate().map(permute).unbatch()

    if repeat:
        first_epoch = skip_examples // epoch_size
        ds = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(epoch)
        ds = ds.skip(skip_examples - first_epoch * epoch_size)
    else:
        ds = epoch(tf.constant(0, tf.int64)).skip(skip_examples)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    ds = ds.map(_parser(metadata, path), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
