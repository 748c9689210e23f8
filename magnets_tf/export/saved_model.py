"""SavedModel export for TF Serving: decode + tokenizer signatures, versioned and atomic.

`export_saved_model` writes `export_base/<next integer version>/`, a SavedModel built with
`keras.export.ExportArchive` (the pattern the C++ loader of TF Serving reads; a bare
`tf.Module` holding a Keras 3 model fails there with "Could not find variable ..."):

  saved_model.pb, variables/        the signatures below
  assets/plan.json                  the baked-in decode plan and model facts, for operators
  assets.extra/tf_serving_warmup_requests
                                    one PredictionLog per signature (TFRecord), so the
                                    model server traces/compiles everything at load time
  batching_parameters.txt           TF Serving batching parameters (allowed_batch_sizes =
                                    the exported batch sizes)

Signatures, for each exported batch size B (the default batch size gets the bare names,
every other B the suffix `_b<B>`, e.g. `serving_default_b8`):
  serving_default   class_ids int32 [B], seed int32 [2] -> tokens int32 [B, h, w],
                    images uint8 [B, H, W, C]
  generate_tokens   class_ids, seed -> tokens
  decode_tokens     tokens int32 [B, h, w] -> images uint8 [B, H, W, C]
  encode_images     images uint8 [B, H, W, C] -> tokens int32 [B, h, w]
Video tokenizers: samples are clips, images uint8 [B, T, H, W, C] and tokens [B, t, h, w].
A frame-prediction plan (condition tokens = whole latent frames) adds the input
`clips` uint8 [B, T, H, W, C] to serving_default and generate_tokens: its first frames
are encoded (later frames hidden, as in training) and kept; the rest is generated. The
given frames are those the condition tokens cover, or `condition_frames` when the model
was trained on fewer (Kinetics-600: 5 frames in 2 latent frames of 4). A class-agnostic
transformer (num_classes 0, e.g. Kinetics-600 frame prediction) has no `class_ids` input:
every sample is decoded with the null class.
Inputs are declared with an unknown leading dimension and checked inside the graph, so a
wrong batch, a seed that is not an int32 pair, a class id outside [0, num_classes) or a
code outside [0, codebook_size) fails with InvalidArgument and a message naming it, in
every client (TF Serving does not check fed shapes against the signature). Dtypes are
exact (`INPUT_DTYPES`): the model server rejects a tensor of another dtype ("Expects
arg[i] to be int32 but double is provided"); Python's `Session.run` casts fed values
instead (`export.server_path` runs requests the server's way; docs/serving.md).

The version directory is written into a hidden temp directory beside it
(`.tmp-export-pid<pid>@<host>-*`) and renamed into place: a failed export leaves nothing, an
existing version is never overwritten, and the model server (which only loads
integer-named directories) never sees a partial version. Each export first sweeps the
temp directories of exports killed on this host (`files.sweep_debris`).
"""
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from magnets_tf.data.video import condition_frames, condition_token_count
from magnets_tf.decoding.decoder import Decoder
from magnets_tf.decoding.schedule import DecodePlan
from magnets_tf.utils import files

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
PLAN_FILE = os.path.join("assets", "plan.json")
BATCHING_FILE = "batching_parameters.txt"
SIGNATURE_KINDS = ("serving_default", "generate_tokens", "decode_tokens", "encode_images")
# The dtype of every signature input; a request tensor of another dtype is rejected.
INPUT_DTYPES = dict(class_ids=tf.int32, seed=tf.int32, tokens=tf.int32, images=tf.uint8,
                    clips=tf.uint8)
TEMP_PREFIX = ".tmp-export-"
_VERSION = re.compile(r"^[0-9]+$")


def signature_name(kind, batch_size, default_batch_size):
    """Signature name of `kind` for batch size B: bare for the default B, else `_b<B>`."""
    if kind not in SIGNATURE_KINDS:
        raise ValueError(f"unknown signature kind {kind!r}; known: {SIGNATURE_KINDS}")
    return kind if batch_size == default_batch_size else f"{kind}_b{batch_size}"


def signature_names(batch_sizes, default_batch_size):
    """{name: (kind, batch_size)} of every exported signature."""
    return {signature_name(kind, b, default_batch_size): (kind, b)
            for b in batch_sizes for kind in SIGNATURE_KINDS}


def next_version(export_base):
    """The next free integer version under export_base (1 when there is none)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(n) for n in os.listdir(export_base) if _VERSION.match(n)]
    return max(versions, default=0) + 1


def batching_parameters_text(batch_sizes, batch_timeout_micros=1000, num_batch_threads=2,
                             max_enqueued_batches=16):
    """TF Serving `--batching_parameters_file` text proto for the exported batch sizes."""
    sizes = sorted(set(int(b) for b in batch_sizes))
    lines = [
        "# TF Serving batching parameters of this export: allowed_batch_sizes are the",
        "# exported batch sizes. TF Serving's batching session merges requests along",
        "# dimension 0 of every input; the decode signatures' batch-wide seed [2] has no",
        "# batch dimension, so serve them without --enable_batching (docs/serving.md).",
        f"max_batch_size {{ value: {sizes[-1]} }}",
        f"batch_timeout_micros {{ value: {int(batch_timeout_micros)} }}",
        f"max_enqueued_batches {{ value: {int(max_enqueued_batches)} }}",
        f"num_batch_threads {{ value: {int(num_batch_threads)} }}",
    ]
    lines += [f"allowed_batch_sizes: {b}" for b in sizes]
    return "\n".join(lines) + "\n"


def plan_record(plan, transformer, tokenizer, batch_sizes, default_batch_size, jit_compile,
                condition_frames=None):
    """JSON-able description of what the export bakes in (written to assets/plan.json)."""
    return dict(
        plan=dataclasses.asdict(plan),
        plan_table=plan.describe().splitlines(),
        jit_compile=bool(jit_compile),
        compute_dtype=transformer.compute_dtype,
        batch_sizes=list(batch_sizes),
        default_batch_size=default_batch_size,
        signatures={name: dict(kind=kind, batch_size=b) for name, (kind, b)
                    in signature_names(batch_sizes, default_batch_size).items()},
        num_classes=transformer.num_classes,
        class_ids_input=transformer.num_classes > 0,
        codebook_size=transformer.codebook_size,
        grid_shape=list(tokenizer.grid_shape),
        image_shape=list(_sample_shape(tokenizer)),
        condition_frames=_condition_frames(tokenizer, plan, condition_frames),
        transformer_config=transformer.get_config(),
        tokenizer_config=tokenizer.get_config(),
    )


def _is_video(tokenizer):
    return hasattr(tokenizer, "video_shape")


def _sample_shape(tokenizer):
    """What one sample is: an image [H, W, C] or a clip [T, H, W, C]."""
    return tuple(tokenizer.video_shape if _is_video(tokenizer) else tokenizer.image_shape)


def _condition_frames(tokenizer, plan, frames=None):
    """Frames of a clip that condition a frame-prediction plan (0: generation): `frames`
    if given (checked: the plan's condition tokens must be the latent frames covering
    them), else all frames of the latent frames the condition tokens cover."""
    if not plan.num_condition_tokens:
        if frames:
            raise ValueError(f"condition_frames={frames} given but the plan generates "
                             f"without condition tokens")
        return 0
    if frames is None:
        return condition_frames(plan.num_condition_tokens, tokenizer.video_shape,
                                tokenizer.grid_shape)
    covered = condition_token_count(frames, tokenizer.video_shape, tokenizer.grid_shape)
    if covered != plan.num_condition_tokens:
        raise ValueError(f"condition_frames={frames} are covered by {covered} tokens; the "
                         f"plan has {plan.num_condition_tokens} condition tokens")
    return int(frames)


def _check_compatible(transformer, tokenizer, plan):
    grid = tuple(tokenizer.grid_shape)
    if transformer.num_tokens != math.prod(grid):
        raise ValueError(f"the transformer generates {transformer.num_tokens} tokens but the "
                         f"tokenizer grid is {'x'.join(map(str, grid))}={math.prod(grid)}")
    if transformer.codebook_size != tokenizer.codebook_size:
        raise ValueError(f"transformer codebook_size={transformer.codebook_size} differs from "
                         f"the tokenizer's {tokenizer.codebook_size}")
    if transformer.num_condition_tokens != plan.num_condition_tokens:
        raise ValueError(f"the plan has {plan.num_condition_tokens} condition tokens, the "
                         f"transformer {transformer.num_condition_tokens}")
    if plan.num_condition_tokens:
        frame_tokens = math.prod(grid[1:])
        if not _is_video(tokenizer) or plan.num_condition_tokens % frame_tokens:
            raise ValueError(f"condition tokens ({plan.num_condition_tokens}) must be whole "
                             f"latent frames of a video tokenizer (frame prediction); "
                             f"image export needs num_condition_tokens=0")


def _assert_in_range(values, limit, message):
    """In-graph checks that every value lies in [0, limit)."""
    return [tf.debugging.assert_greater_equal(values, 0, message=message),
            tf.debugging.assert_less(values, limit, message=message)]


def _static_batch(tensor, size):
    """`tensor` with a static leading dimension `size`, built so that it cannot fail.

    The in-graph asserts report a wrong size with a clear message; a shape-checking op
    (ensure_shape, reshape) here could run first and fail with an opaque one instead."""
    rank = tensor.shape.rank
    padded = tf.pad(tensor, [[0, size]] + [[0, 0]] * (rank - 1))
    return tf.reshape(padded[:size], [size, *tensor.shape[1:]])


class _Endpoints:
    """Graph-building endpoint functions of one batch size (validation + model calls)."""

    def __init__(self, decoder, tokenizer, condition_frames=None):
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.batch_size = decoder.batch_size
        model = decoder.model
        self.num_classes = model.num_classes
        self.null_class_id = model.null_class_id
        self.codebook_size = model.codebook_size
        self.grid_shape = tuple(tokenizer.grid_shape)
        self.image_shape = _sample_shape(tokenizer)
        self.condition_frames = _condition_frames(tokenizer, decoder.plan, condition_frames)

    def _check_batch(self, tensor, name):
        return tf.debugging.assert_equal(
            tf.shape(tensor)[0], self.batch_size,
            message=f"{name} must hold batch_size={self.batch_size} entries (this signature "
                    f"is for batch size {self.batch_size})")

    def _valid_generate_inputs(self, class_ids, seed):
        """Checked (class_ids, seed); class_ids None (class-agnostic): the null class."""
        checks = [tf.debugging.assert_equal(
            tf.size(seed), 2, message="seed must be an int32 pair of shape [2]")]
        if class_ids is not None:
            checks += [self._check_batch(class_ids, "class_ids"),
                       *_assert_in_range(class_ids, self.num_classes,
                                         f"class_ids must be in [0, {self.num_classes})")]
        with tf.control_dependencies(checks):
            if class_ids is None:
                class_ids = tf.fill([self.batch_size], tf.constant(self.null_class_id))
            return _static_batch(class_ids, self.batch_size), _static_batch(seed, 2)

    def _tokens(self, class_ids, seed, clips=None):
        class_ids, seed = self._valid_generate_inputs(class_ids, seed)
        b, n = self.batch_size, self.decoder.plan.num_tokens
        given = tf.zeros([b, n], tf.int32)
        keep = tf.zeros([b, n], tf.bool)
        if self.condition_frames:
            c = self.decoder.plan.num_condition_tokens
            given = tf.concat([self._condition_tokens(clips), given[:, c:]], axis=1)
            keep = tf.concat([tf.ones([b, c], tf.bool), keep[:, c:]], axis=1)
        decode = self.decoder.decode_function(with_stats=False)
        tokens, _ = decode(given, keep, class_ids, seed)
        return tf.reshape(tokens, [b, *self.grid_shape])

    def _valid_samples(self, samples, name):
        checks = [
            self._check_batch(samples, name),
            tf.debugging.assert_equal(
                tf.shape(samples)[1:], tf.constant(self.image_shape),
                message=f"{name} must be uint8 [B, {', '.join(map(str, self.image_shape))}]"),
        ]
        with tf.control_dependencies(checks):
            return _static_batch(samples, self.batch_size)

    def _condition_tokens(self, clips):
        """Tokens of the condition frames, encoded with the future frames hidden (the
        last condition frame repeated, as in training)."""
        clips = tf.cast(self._valid_samples(clips, "clips"), tf.float32) / 255.0
        f, total = self.condition_frames, self.image_shape[0]
        held = tf.concat([clips[:, :f], tf.repeat(clips[:, f - 1:f], total - f, axis=1)],
                         axis=1)
        tokens = tf.reshape(tf.cast(self.tokenizer.encode(held), tf.int32),
                            [self.batch_size, -1])
        return tokens[:, :self.decoder.plan.num_condition_tokens]

    def _images(self, tokens):
        images = self.tokenizer.decode(tokens)
        return tf.cast(tf.round(images * 255.0), tf.uint8)

    def serving_default(self, class_ids, seed, clips=None):
        tokens = self._tokens(class_ids, seed, clips)
        return {"tokens": tokens, "images": self._images(tokens)}

    def generate_tokens(self, class_ids, seed, clips=None):
        return {"tokens": self._tokens(class_ids, seed, clips)}

    def decode_tokens(self, tokens):
        grid = ", ".join(map(str, self.grid_shape))
        checks = [
            self._check_batch(tokens, "tokens"),
            tf.debugging.assert_equal(tf.shape(tokens)[1:], tf.constant(self.grid_shape),
                                      message=f"tokens must have shape [B, {grid}]"),
            *_assert_in_range(tokens, self.codebook_size,
                              f"tokens must be codes in [0, {self.codebook_size})"),
        ]
        with tf.control_dependencies(checks):
            tokens = _static_batch(tokens, self.batch_size)
        return {"images": self._images(tokens)}

    def encode_images(self, images):
        images = self._valid_samples(images, "images")
        tokens = self.tokenizer.encode(tf.cast(images, tf.float32) / 255.0)
        return {"tokens": tf.cast(tokens, tf.int32)}

    @property
    def class_agnostic(self):
        return self.num_classes == 0

    def function(self, kind):
        """The endpoint function of `kind`, taking `input_signature(kind)`'s inputs in
        order (a class-agnostic model's decode endpoints take no class_ids)."""
        method = getattr(self, kind)
        if kind not in ("serving_default", "generate_tokens") or not self.class_agnostic:
            return method
        if self.condition_frames:
            def class_agnostic(seed, clips):
                return method(None, seed, clips)
        else:
            def class_agnostic(seed):
                return method(None, seed)
        return class_agnostic

    def input_signature(self, kind):
        def spec(name, shape):
            return tf.TensorSpec([None, *shape], INPUT_DTYPES[name], name=name)

        if kind in ("serving_default", "generate_tokens"):
            specs = [spec("seed", [])]
            if not self.class_agnostic:
                specs.insert(0, spec("class_ids", []))
            if self.condition_frames:  # frame prediction: the clips to continue
                specs.append(spec("clips", self.image_shape))
            return specs
        if kind == "decode_tokens":
            return [spec("tokens", self.grid_shape)]
        return [spec("images", self.image_shape)]

    def example_inputs(self, kind, rng):
        """Valid inputs of `kind` (numpy, keyed by input name) for warm-up requests."""
        b = self.batch_size
        if kind in ("serving_default", "generate_tokens"):
            inputs = {"seed": np.array([0, 0], np.int32)}
            if not self.class_agnostic:
                inputs["class_ids"] = (np.arange(b) % self.num_classes).astype(np.int32)
            if self.condition_frames:
                inputs["clips"] = rng.integers(0, 256, [b, *self.image_shape], dtype=np.uint8)
            return inputs
        if kind == "decode_tokens":
            return {"tokens": rng.integers(0, self.codebook_size, [b, *self.grid_shape],
                                           dtype=np.int32)}
        return {"images": rng.integers(0, 256, [b, *self.image_shape], dtype=np.uint8)}


def warmup_records(requests):
    """Serialized PredictionLog records of {signature_name: {input: ndarray}}."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    records = []
    for name, inputs in requests.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    return records


def _write_warmup(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def _normalize_batch_sizes(batch_sizes, default_batch_size):
    sizes = []
    for b in batch_sizes:
        b = int(b)
        if b <= 0:
            raise ValueError(f"batch sizes must be positive, got {b}")
        if b not in sizes:
            sizes.append(b)
    if not sizes:
        raise ValueError("batch_sizes must name at least one batch size")
    default = sizes[0] if default_batch_size is None else int(default_batch_size)
    if default not in sizes:
        raise ValueError(f"default_batch_size={default} is not one of batch_sizes={sizes}")
    return sizes, default


def build_archive(transformer, tokenizer, plan, batch_sizes=(1,), default_batch_size=None,
                  jit_compile=True, condition_frames=None):
    """(ExportArchive with every signature, [(signature name, _Endpoints, kind)]).

    One `Decoder` (one tf.function, XLA when jit_compile) per batch size is reused by its
    `serving_default*` and `generate_tokens*` endpoints. condition_frames: frames of the
    `clips` input that are given (default: those the condition tokens cover)."""
    if not isinstance(plan, DecodePlan):
        raise TypeError(f"plan must be a DecodePlan (see make_plan), got {type(plan)}")
    _check_compatible(transformer, tokenizer, plan)
    sizes, default = _normalize_batch_sizes(batch_sizes, default_batch_size)
    if not tokenizer.built:
        tokenizer.build()
    archive = keras.export.ExportArchive()
    archive.track(transformer)
    archive.track(tokenizer)
    endpoints = []
    # The default batch size first: ExportArchive aliases its first endpoint too.
    for b in [default] + [s for s in sizes if s != default]:
        ends = _Endpoints(Decoder(transformer, plan, b, jit_compile=jit_compile), tokenizer,
                          condition_frames)
        for kind in SIGNATURE_KINDS:
            name = signature_name(kind, b, default)
            archive.add_endpoint(name, ends.function(kind), ends.input_signature(kind))
            endpoints.append((name, ends, kind))
    return archive, endpoints


def export_saved_model(transformer, tokenizer, plan, export_base, batch_sizes=(1,),
                       default_batch_size=None, jit_compile=True, warmup=True, seed=0,
                       condition_frames=None):
    """Writes export_base/<next version>/ (see the module docstring); returns its path.

    export_base is checked (writable, not a file) before the archive is built."""
    sizes, default = _normalize_batch_sizes(batch_sizes, default_batch_size)
    export_base = os.path.abspath(str(export_base))
    files.check_writable_dir(export_base, "export_base")
    files.sweep_debris(export_base, log=print)
    archive, endpoints = build_archive(transformer, tokenizer, plan, sizes, default,
                                       jit_compile, condition_frames)
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{files.owner_tag()}-", dir=export_base)
    try:
        target = os.path.join(tmp, "model")
        archive.write_out(target, verbose=False)
        rng = np.random.default_rng(seed)
        if warmup:
            requests = {name: ends.example_inputs(kind, rng) for name, ends, kind in endpoints}
            _write_warmup(os.path.join(target, WARMUP_FILE), warmup_records(requests))
        record = plan_record(plan, transformer, tokenizer, sizes, default, jit_compile,
                             condition_frames)
        os.makedirs(os.path.join(target, "assets"), exist_ok=True)
        with open(os.path.join(target, PLAN_FILE), "w") as f:
            json.dump(record, f, indent=2)
        with open(os.path.join(target, BATCHING_FILE), "w") as f:
            f.write(batching_parameters_text(sizes))
        # Claim the next free version; os.rename never replaces a non-empty directory,
        # so a version that appears concurrently is skipped, not overwritten.
        while True:
            version_dir = os.path.join(export_base, str(next_version(export_base)))
            try:
                os.rename(target, version_dir)
                break
            except OSError:
                if not os.path.exists(version_dir):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return version_dir
