"""Export tests: the SavedModel is served the way TF Serving loads it, without magnets_tf.

A tiny real transformer + VQGAN are exported once (non-XLA; the XLA export is a slow
test). A fresh `python -I` process outside the repo, where magnets_tf cannot be imported,
loads it with the TF1 session loader and answers PredictRequests; its tokens must equal the
in-process decoder's for the same plan, seed and jit setting.
"""
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.decoding.decoder import Decoder
from magnets_tf.decoding.schedule import make_plan
from magnets_tf.export import saved_model
from magnets_tf.models.presets import build_transformer
from magnets_tf.models.vqgan import build_vqgan

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "session_client.py")
NUM_CLASSES = 3
BATCH_SIZES = (1, 2)


def _models():
    keras.utils.set_random_seed(3)
    tokenizer = build_vqgan("tiny_test", image_shape=(8, 8, 1))
    h, w = tokenizer.grid_shape
    transformer = build_transformer("tiny", codebook_size=tokenizer.codebook_size,
                                    num_classes=NUM_CLASSES, num_tokens=h * w)
    plan = make_plan(h * w, num_steps=4, model_schedule="2:2,1:2", guidance_scale=1.0,
                     guidance_steps=1)
    return transformer, tokenizer, plan


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    transformer, tokenizer, plan = _models()
    base = tmp_path_factory.mktemp("export_base")
    version_dir = saved_model.export_saved_model(transformer, tokenizer, plan, base,
                                                 batch_sizes=BATCH_SIZES, jit_compile=False)
    return dict(transformer=transformer, tokenizer=tokenizer, plan=plan, base=str(base),
                dir=version_dir)


def _request(path, signature, **inputs):
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    with open(path, "wb") as f:
        f.write(request.SerializeToString())
    return str(path)


def _serve(export_dir, work_dir, requests):
    """Runs PredictRequests [(signature, inputs)] in a fresh process without magnets_tf.

    Returns a list of (dict of outputs | error message)."""
    work_dir.mkdir(exist_ok=True)
    paths = [_request(work_dir / f"request_{i}.pb", sig, **inputs)
             for i, (sig, inputs) in enumerate(requests)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", CLIENT, export_dir, str(work_dir), *paths],
                          cwd=str(work_dir), env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "MAGNETS_TF_IMPORTABLE=False" in lines, proc.stdout
    results = []
    for i in range(len(requests)):
        line = next(l for l in lines if l.startswith(f"RESULT {i} "))
        if line.endswith(" OK"):
            with np.load(work_dir / f"{i}.npz") as data:
                results.append(dict(data))
        else:
            results.append(line)
    return results


def _in_process(exported, batch_size, class_ids, seed, jit_compile):
    decoder = Decoder(exported["transformer"], exported["plan"], batch_size,
                      jit_compile=jit_compile)
    tokens = decoder.generate(np.asarray(class_ids, np.int32), np.asarray(seed, np.int32))
    return tokens.reshape(batch_size, *exported["tokenizer"].grid_shape)


def test_signature_names():
    names = saved_model.signature_names((1, 8), default_batch_size=1)
    assert set(names) == {"serving_default", "generate_tokens", "decode_tokens",
                          "encode_images", "serving_default_b8", "generate_tokens_b8",
                          "decode_tokens_b8", "encode_images_b8"}
    assert names["serving_default_b8"] == ("serving_default", 8)
    assert saved_model.signature_name("decode_tokens", 8, default_batch_size=8) == \
        "decode_tokens"
    with pytest.raises(ValueError, match="unknown signature kind"):
        saved_model.signature_name("predict", 1, 1)


def test_next_version_ignores_non_integer_entries(tmp_path):
    assert saved_model.next_version(tmp_path / "missing") == 1
    for name in ("1", "7", ".tmp-export-x", "notes", "12a"):
        (tmp_path / name).mkdir()
    assert saved_model.next_version(tmp_path) == 8


def test_batching_parameters_match_batch_sizes():
    # The BatchingParameters proto ships with the model server, not tensorflow-serving-api:
    # check the text-format fields directly.
    text = saved_model.batching_parameters_text([8, 1, 8])
    fields = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert [l for l in fields if l.startswith("allowed")] == [
        "allowed_batch_sizes: 1", "allowed_batch_sizes: 8"]
    assert "max_batch_size { value: 8 }" in fields
    assert all(re.fullmatch(r"\w+(: \d+| \{ value: \d+ \})", l) for l in fields), fields


def test_export_layout(exported):
    version_dir = exported["dir"]
    assert os.path.basename(version_dir) == "1"
    assert sorted(os.listdir(exported["base"])) == ["1"]  # no temp dirs left behind
    for rel in ("saved_model.pb", "variables", saved_model.WARMUP_FILE, saved_model.PLAN_FILE,
                saved_model.BATCHING_FILE):
        assert os.path.exists(os.path.join(version_dir, rel)), rel
    with open(os.path.join(version_dir, saved_model.PLAN_FILE)) as f:
        record = json.load(f)
    assert record["plan"]["num_steps"] == exported["plan"].num_steps
    assert record["plan"]["factors"] == list(exported["plan"].factors)
    assert record["batch_sizes"] == list(BATCH_SIZES) and record["jit_compile"] is False
    with open(os.path.join(version_dir, saved_model.BATCHING_FILE)) as f:
        assert "allowed_batch_sizes: 1\nallowed_batch_sizes: 2\n" in f.read()


def test_warmup_file_holds_one_prediction_log_per_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2
    path = os.path.join(exported["dir"], saved_model.WARMUP_FILE)
    names = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.HasField("predict_log")
        names.append(log.predict_log.request.model_spec.signature_name)
    assert sorted(names) == sorted(saved_model.signature_names(BATCH_SIZES, 1))


def test_session_loader_without_magnets_tf_matches_in_process_decoder(exported, tmp_path):
    h, w = exported["tokenizer"].grid_shape
    seed = np.array([5, 11], np.int32)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, exported["tokenizer"].codebook_size, [2, h, w], dtype=np.int32)
    images = rng.integers(0, 256, [1, 8, 8, 1], dtype=np.uint8)
    results = _serve(exported["dir"], tmp_path / "serve", [
        ("serving_default", dict(class_ids=np.array([2], np.int32), seed=seed)),
        ("generate_tokens_b2", dict(class_ids=np.array([0, 1], np.int32), seed=seed)),
        ("decode_tokens_b2", dict(tokens=codes)),
        ("encode_images", dict(images=images)),
        ("serving_default", dict(class_ids=np.array([NUM_CLASSES], np.int32), seed=seed)),
        ("generate_tokens_b2", dict(class_ids=np.array([0, -1], np.int32), seed=seed)),
        ("serving_default", dict(class_ids=np.array([1], np.int32),
                                 seed=np.array([1, 2, 3], np.int32))),
        ("generate_tokens_b2", dict(class_ids=np.array([1], np.int32), seed=seed)),
    ])
    served, served_b2, decoded, encoded = results[:4]
    tokenizer = exported["tokenizer"]

    expected = _in_process(exported, 1, [2], seed, jit_compile=False)
    assert served["tokens"].dtype == np.int32 and served["tokens"].shape == (1, h, w)
    np.testing.assert_array_equal(served["tokens"], expected)
    assert served["images"].dtype == np.uint8 and served["images"].shape == (1, 8, 8, 1)
    want_images = np.round(tokenizer.decode(expected).numpy() * 255)
    np.testing.assert_allclose(served["images"], want_images, atol=1)
    np.testing.assert_array_equal(served_b2["tokens"],
                                  _in_process(exported, 2, [0, 1], seed, jit_compile=False))
    np.testing.assert_allclose(decoded["images"],
                               np.round(tokenizer.decode(codes).numpy() * 255), atol=1)
    np.testing.assert_array_equal(encoded["tokens"],
                                  tokenizer.encode(images.astype(np.float32) / 255).numpy())

    bad_class, negative_class, bad_seed, bad_batch = results[4:]
    for message in (bad_class, negative_class):
        assert "InvalidArgumentError" in message and \
            f"class_ids must be in [0, {NUM_CLASSES})" in message, message
    assert "InvalidArgumentError" in bad_seed and "seed must be an int32 pair" in bad_seed
    assert "InvalidArgumentError" in bad_batch and "batch_size=2" in bad_batch


@pytest.mark.slow
def test_saved_model_cli_runs_serving_default(exported, tmp_path):
    class_ids, seed = tmp_path / "class_ids.npy", tmp_path / "seed.npy"
    np.save(class_ids, np.array([1], np.int32))
    np.save(seed, np.array([4, 2], np.int32))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The saved_model_cli entry point, run isolated (-I) outside the repo.
    proc = subprocess.run(
        [sys.executable, "-I", "-c", "from tensorflow.python.tools.saved_model_cli import main; "
         "main()", "run", "--dir", exported["dir"], "--tag_set", "serve",
         "--signature_def", "serving_default",
         "--inputs", f"class_ids={class_ids};seed={seed}", "--outdir", str(out)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokens = np.load(out / "tokens.npy")
    np.testing.assert_array_equal(tokens, _in_process(exported, 1, [1], [4, 2], False))
    assert np.load(out / "images.npy").dtype == np.uint8


def test_failed_export_leaves_nothing_and_keeps_existing_versions(exported, monkeypatch):
    base = exported["base"]
    before = {name: os.path.getmtime(os.path.join(base, name, "saved_model.pb"))
              for name in os.listdir(base)}

    def fail(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(saved_model, "_write_warmup", fail)
    with pytest.raises(OSError, match="injected"):
        saved_model.export_saved_model(exported["transformer"], exported["tokenizer"],
                                       exported["plan"], base, batch_sizes=(1,),
                                       jit_compile=False)
    after = {name: os.path.getmtime(os.path.join(base, name, "saved_model.pb"))
             for name in os.listdir(base)}
    assert after == before


def test_incompatible_models_are_rejected():
    transformer, tokenizer, plan = _models()
    other = build_vqgan("tiny_test", image_shape=(8, 8, 1), codebook_size=8)
    with pytest.raises(ValueError, match="codebook_size"):
        saved_model.build_archive(transformer, other, plan)
    with pytest.raises(ValueError, match="default_batch_size=3"):
        saved_model.build_archive(transformer, tokenizer, plan, batch_sizes=(1, 2),
                                  default_batch_size=3)


@pytest.mark.slow
def test_xla_export_matches_in_process_xla_decoder(tmp_path):
    transformer, tokenizer, plan = _models()
    version_dir = saved_model.export_saved_model(transformer, tokenizer, plan,
                                                 tmp_path / "base", batch_sizes=(2,),
                                                 jit_compile=True)
    seed = np.array([9, 1], np.int32)
    (served,) = _serve(version_dir, tmp_path / "serve", [
        ("serving_default", dict(class_ids=np.array([2, 0], np.int32), seed=seed))])
    decoder = Decoder(transformer, plan, 2, jit_compile=True)
    expected = decoder.generate(np.array([2, 0], np.int32), seed)
    np.testing.assert_array_equal(served["tokens"].reshape(2, -1), expected)


def test_bfloat16_export_serves_the_in_process_bfloat16_decoder(tmp_path):
    """A model decoded in bfloat16 exports and serves the tokens of the bf16 decoder."""
    from magnets_tf.models.transformer import with_compute_dtype
    transformer, tokenizer, plan = _models()
    bf16 = with_compute_dtype(transformer, "bfloat16")
    version_dir = saved_model.export_saved_model(bf16, tokenizer, plan, tmp_path / "base",
                                                 batch_sizes=(2,), jit_compile=False)
    with open(os.path.join(version_dir, saved_model.PLAN_FILE)) as f:
        assert json.load(f)["compute_dtype"] == "bfloat16"
    seed = np.array([7, 3], np.int32)
    (served,) = _serve(version_dir, tmp_path / "serve", [
        ("serving_default", dict(class_ids=np.array([1, 2], np.int32), seed=seed))])
    expected = Decoder(bf16, plan, 2, jit_compile=False).generate(
        np.array([1, 2], np.int32), seed)
    np.testing.assert_array_equal(served["tokens"].reshape(2, -1), expected)
    assert served["images"].dtype == np.uint8
    assert "bfloat16" in _graph_dtypes(version_dir, "Cast"), "no bfloat16 in the export"
    float32_dir = saved_model.export_saved_model(transformer, tokenizer, plan,
                                                 tmp_path / "base32", batch_sizes=(2,),
                                                 jit_compile=False)
    assert "bfloat16" not in _graph_dtypes(float32_dir, "Cast")


def _graph_dtypes(version_dir, op):
    """The DstT dtype names of every `op` node in an export's graph and function library."""
    from tensorflow.core.protobuf import saved_model_pb2
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    return {tf.dtypes.as_dtype(n.attr["DstT"].type).name
            for n in nodes if n.op == op}


def _video_models(condition_tokens):
    from tests.video_helpers import tiny_video_tokenizer
    keras.utils.set_random_seed(4)
    tokenizer = tiny_video_tokenizer()
    transformer = build_transformer("tiny", codebook_size=16, num_classes=NUM_CLASSES,
                                    num_tokens=32, num_condition_tokens=condition_tokens)
    plan = make_plan(32, num_condition_tokens=condition_tokens, num_steps=3,
                     model_schedule="2:1,1:2", guidance_steps=0)
    return transformer, tokenizer, plan


def test_frame_prediction_export_serves_clips(tmp_path):
    """Frame prediction: the served condition tokens are the clips' first frames encoded
    with the future hidden, and the tokens equal the in-process decoder's."""
    from magnets_tf.data.video import clip_tokens
    transformer, tokenizer, plan = _video_models(condition_tokens=16)
    version_dir = saved_model.export_saved_model(transformer, tokenizer, plan,
                                                 tmp_path / "base", batch_sizes=(2,),
                                                 jit_compile=False)
    clips = np.random.default_rng(0).integers(0, 256, [2, 4, 8, 8, 1], dtype=np.uint8)
    seed = np.array([5, 6], np.int32)
    classes = np.array([1, 2], np.int32)
    served, bad = _serve(version_dir, tmp_path / "serve", [
        ("serving_default", dict(class_ids=classes, seed=seed, clips=clips)),
        ("serving_default", dict(class_ids=classes, seed=seed, clips=clips[:1]))])
    assert served["tokens"].shape == (2, 2, 4, 4)
    assert served["images"].shape == (2, 4, 8, 8, 1) and served["images"].dtype == np.uint8
    condition = clip_tokens(tokenizer, clips.astype(np.float32) / 255.0, 2, 16)[:, :16]
    expected = Decoder(transformer, plan, 2, jit_compile=False).generate(
        classes, seed, condition_tokens=condition)
    np.testing.assert_array_equal(served["tokens"].reshape(2, -1), expected)
    assert "clips must hold batch_size=2" in bad


def test_guided_frame_prediction_export_uses_the_masked_condition_decoder():
    """The export's frame-prediction signature decodes with the decoder's MAGVIT-style
    unconditional branch (condition masked), not class-token guidance."""
    from magnets_tf.data.video import clip_tokens
    transformer, tokenizer, _ = _video_models(condition_tokens=16)
    embeddings = transformer.token_embedding.embeddings
    embeddings.assign(embeddings * 20.0)  # Spread the random logits: guidance shows.
    plan = make_plan(32, num_condition_tokens=16, num_steps=3, model_schedule="2:1,1:2",
                     guidance_scale=8.0, guidance_steps=2)
    assert plan.uncond_input == "masked_condition"
    _, endpoints = saved_model.build_archive(transformer, tokenizer, plan, batch_sizes=(2,),
                                             jit_compile=False)
    record = saved_model.plan_record(plan, transformer, tokenizer, (2,), 2, False)
    assert record["plan"]["uncond_input"] == "masked_condition"
    clips = np.random.default_rng(1).integers(0, 256, [2, 4, 8, 8, 1], dtype=np.uint8)
    seed, classes = np.array([3, 4], np.int32), np.array([0, 2], np.int32)
    served = endpoints[0][1].generate_tokens(tf.constant(classes), tf.constant(seed),
                                             tf.constant(clips))["tokens"].numpy()
    condition = clip_tokens(tokenizer, clips.astype(np.float32) / 255.0, 2, 16)[:, :16]

    def decode(uncond_input):
        guided = make_plan(32, num_condition_tokens=16, num_steps=3, model_schedule="2:1,1:2",
                           guidance_scale=8.0, guidance_steps=2, uncond_input=uncond_input)
        return Decoder(transformer, guided, 2, jit_compile=False).generate(
            classes, seed, condition_tokens=condition)

    np.testing.assert_array_equal(served.reshape(2, -1), decode("masked_condition"))
    assert not np.array_equal(served.reshape(2, -1), decode("null_class"))


def test_video_generation_export_and_bad_condition_layout(tmp_path):
    transformer, tokenizer, plan = _video_models(condition_tokens=0)
    archive, endpoints = saved_model.build_archive(transformer, tokenizer, plan,
                                                   jit_compile=False)
    ends = endpoints[0][1]
    out = ends.serving_default(tf.constant([0], tf.int32), tf.constant([1, 2], tf.int32))
    assert tuple(out["images"].shape) == (1, 4, 8, 8, 1)
    assert tuple(out["tokens"].shape) == (1, 2, 4, 4)
    bad_transformer, _, _ = _video_models(condition_tokens=8)  # half a latent frame
    bad_plan = make_plan(32, num_condition_tokens=8, num_steps=3, model_schedule="1:3",
                         guidance_steps=0)
    with pytest.raises(ValueError, match="whole latent frames"):
        saved_model.build_archive(bad_transformer, tokenizer, bad_plan)


def test_class_agnostic_frame_prediction_exports_and_serves(tmp_path):
    """num_classes == 0 (Kinetics-600's setting): no class_ids input, the null class is
    decoded; the clips' first `condition_frames` frames are given (here 1 of the 2 frames
    of the first latent frame), and the served tokens equal the in-process decoder's."""
    from magnets_tf.data.video import clip_tokens
    from tests.video_helpers import tiny_video_tokenizer
    keras.utils.set_random_seed(5)
    tokenizer = tiny_video_tokenizer()
    transformer = build_transformer("tiny", codebook_size=16, num_classes=0, num_tokens=32,
                                    num_condition_tokens=16)
    plan = make_plan(32, num_condition_tokens=16, num_steps=3, model_schedule="2:1,1:2",
                     guidance_scale=2.0, guidance_steps=1)
    version_dir = saved_model.export_saved_model(transformer, tokenizer, plan,
                                                 tmp_path / "base", batch_sizes=(2,),
                                                 jit_compile=False, condition_frames=1)
    with open(os.path.join(version_dir, saved_model.PLAN_FILE)) as f:
        record = json.load(f)
    assert record["num_classes"] == 0 and record["class_ids_input"] is False
    assert record["condition_frames"] == 1
    clips = np.random.default_rng(2).integers(0, 256, [2, 4, 8, 8, 1], dtype=np.uint8)
    seed = np.array([1, 8], np.int32)
    served, with_classes = _serve(version_dir, tmp_path / "serve", [
        ("serving_default", dict(seed=seed, clips=clips)),
        ("serving_default", dict(class_ids=np.array([0, 0], np.int32), seed=seed,
                                 clips=clips))])
    assert isinstance(with_classes, str) and "class_ids" in with_classes, with_classes
    condition = clip_tokens(tokenizer, clips.astype(np.float32) / 255.0, 1, 16)[:, :16]
    null = np.full(2, transformer.null_class_id, np.int32)
    expected = Decoder(transformer, plan, 2, jit_compile=False).generate(
        null, seed, condition_tokens=condition)
    np.testing.assert_array_equal(served["tokens"].reshape(2, -1), expected)
    assert served["images"].shape == (2, 4, 8, 8, 1)
    # Frames the condition tokens do not cover exactly are refused.
    with pytest.raises(ValueError, match="condition_frames=3 must be positive and leave"):
        saved_model.build_archive(transformer, tokenizer, plan, condition_frames=3)


def test_class_agnostic_generation_takes_only_a_seed():
    transformer, tokenizer, _ = _video_models(condition_tokens=0)
    agnostic = build_transformer("tiny", codebook_size=16, num_classes=0, num_tokens=32)
    plan = make_plan(32, num_steps=3, model_schedule="2:1,1:2", guidance_steps=0)
    _, endpoints = saved_model.build_archive(agnostic, tokenizer, plan, batch_sizes=(2,),
                                             jit_compile=False)
    ends = endpoints[0][1]
    assert [s.name for s in ends.input_signature("serving_default")] == ["seed"]
    out = ends.function("serving_default")(tf.constant([3, 4], tf.int32))
    expected = Decoder(agnostic, plan, 2, jit_compile=False).generate(
        np.full(2, agnostic.null_class_id, np.int32), np.array([3, 4], np.int32))
    np.testing.assert_array_equal(out["tokens"].numpy().reshape(2, -1), expected)
    assert ends.example_inputs("generate_tokens", np.random.default_rng(0)).keys() == {"seed"}
