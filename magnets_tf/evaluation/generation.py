"""Quality and cost of one decode plan: generate n images, score them against a reference.

Shared by tools/evaluate.py (one plan) and tools/sweep_schedules.py (many plans). Class
labels are balanced (sample i gets class i mod C) so FID does not depend on label draws;
batch b decodes with seed (seed, b), so a run is reproducible and the first images do
not change when n grows.
"""
import math
import time

import numpy as np
import tqdm

from magnets_tf.evaluation import fid
from magnets_tf.evaluation import flops
from magnets_tf.models import saving


def balanced_class_ids(n, num_classes):
    """[n] labels 0, 1, ..., C-1, 0, 1, ...: every class equally often (up to one)."""
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    return (np.arange(n) % num_classes).astype(np.int32)


def class_confusion(conditioned, predicted, num_classes):
    """[C, C] counts: row = the class a sample was conditioned on, column = the class the
    classifier saw in it (the diagonal is what class accuracy counts)."""
    conditioned = np.asarray(conditioned).astype(np.int64).ravel()
    predicted = np.asarray(predicted).astype(np.int64).ravel()
    if conditioned.shape != predicted.shape:
        raise ValueError(f"{predicted.size} predicted labels for {conditioned.size} samples")
    bad = predicted[(predicted < 0) | (predicted >= num_classes)]
    if bad.size:
        raise ValueError(f"classifier returned label {int(bad[0])} outside the model's "
                         f"{num_classes} classes (wrong classifier for this model?)")
    return np.bincount(conditioned * num_classes + predicted,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _decoder_class():
    try:
        from magnets_tf.decoding.decoder import Decoder
    except ImportError as e:
        raise ImportError(f"magnets_tf.decoding.decoder is not available ({e}): generation "
                          f"needs the MaGNeTS decoder") from None
    return Decoder


def generate_tokens(model, plan, class_ids, batch_size, seed=0, jit_compile=True,
                    condition_tokens=None, progress=True, description="generate"):
    """Yields token batches (int32 [b, N]) of one sample per class id, batch by batch.

    The decoder has a static batch: the last batch is padded (copies of its last
    sample) and cut back. Batch b decodes with seed (seed, b). condition_tokens: [S, C] given
    leading tokens per sample (frame prediction) or None.
    """
    class_ids = np.asarray(class_ids, np.int32).reshape(-1)
    if class_ids.size == 0:
        raise ValueError("no samples to generate: class_ids is empty")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    decoder = _decoder_class()(model, plan, batch_size, jit_compile=jit_compile)
    with tqdm.tqdm(total=class_ids.size, desc=description, unit="sample",
                   disable=not progress, leave=False) as bar:
        for b, start in enumerate(range(0, class_ids.size, batch_size)):
            ids = _padded(class_ids[start:start + batch_size], batch_size)
            given = None
            if condition_tokens is not None:
                given = _padded(np.asarray(condition_tokens[start:start + batch_size],
                                           np.int32), batch_size)
            tokens = np.asarray(decoder.generate(ids, seed=(int(seed), b),
                                                 condition_tokens=given))
            real = min(batch_size, class_ids.size - start)
            bar.update(real)
            yield tokens[:real]


def _padded(rows, size):
    """rows with copies of the last row appended up to `size` (valid inputs whatever the
    rows are: a class-agnostic model has no class 0)."""
    missing = size - len(rows)
    return rows if not missing else np.concatenate([rows, np.repeat(rows[-1:], missing, 0)])


def generate_images(model, plan, decode_fn, n, batch_size, seed=0, jit_compile=True,
                    progress=True, description="generate"):
    """Yields image batches (float [B,H,W,C] in [0,1]) of n class-balanced samples.

    `decode_fn(tokens int32 [B, h, w]) -> images` is the tokenizer's decoder; the token
    grid is the model's num_tokens as a square (or `decode_fn.grid_shape` when set).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    grid = getattr(decode_fn, "grid_shape", None)
    if grid is None:
        side = math.isqrt(plan.num_tokens)
        if side * side != plan.num_tokens:
            raise ValueError(f"{plan.num_tokens} tokens are not a square grid: give "
                             f"decode_fn a grid_shape attribute")
        grid = (side, side)
    for tokens in generate_tokens(model, plan, balanced_class_ids(n, model.num_classes),
                                  batch_size, seed, jit_compile, progress=progress,
                                  description=description):
        yield np.asarray(decode_fn(tokens.reshape(len(tokens), *grid)))


def plan_gflops(model, plan):
    """{'gflops_exact', 'gflops_paper'} per image of `plan` on `model`'s architecture."""
    arch = flops.ArchSpec.from_model(model)
    return {"gflops_exact": float(sum(flops.exact_gflops(arch, plan))),
            "gflops_paper": float(sum(flops.paper_gflops_for_plan(arch, plan)))}


def evaluate_plan(model, plan, decode_fn, extractor, reference, n, batch_size, seed=0,
                  jit_compile=True, pr_k=3, progress=True, keep_images=64, classify=None):
    """Generates n images with `plan` and scores them against `reference` (a dict from
    `fid.reference_statistics`: mu, sigma, n, features).

    Returns (metrics dict, the first `keep_images` images). Metrics: fid, n, n_reference,
    precision, recall, inception score when the extractor has logits, GFLOPs/image
    (exact and paper), decode and feature seconds/image, and the small-sample note.
    With `classify(images) -> labels`, also `class_accuracy`: the fraction of samples
    recognised as the class they were conditioned on, `class_accuracy_per_class` and
    `class_confusion` (rows: conditioned class, columns: recognised class).
    """
    stats = fid.RunningStats(reference["mu"].shape[0])
    pools, logits, kept = [], [], []
    decode_seconds = feature_seconds = 0.0
    conditioned = balanced_class_ids(n, model.num_classes)
    confusion = np.zeros((model.num_classes, model.num_classes), np.int64)
    seen = 0
    start = time.time()
    for images in generate_images(model, plan, decode_fn, n, batch_size, seed, jit_compile,
                                  progress):
        decode_seconds += time.time() - start
        if len(kept) < keep_images:
            kept.extend(images[:keep_images - len(kept)])
        start = time.time()
        feats = extractor.features(np.clip(images, 0.0, 1.0).astype(np.float32))
        feature_seconds += time.time() - start
        stats.update(feats["pool"])
        if classify is not None:
            confusion += class_confusion(
                conditioned[seen:seen + len(images)], classify(np.clip(images, 0.0, 1.0)),
                model.num_classes)
        seen += len(images)
        pools.append(feats["pool"])
        if "logits" in feats:
            logits.append(feats["logits"])
        start = time.time()
    generated = stats.as_dict()
    metrics = {"fid": fid.frechet_distance(generated["mu"], generated["sigma"],
                                           reference["mu"], reference["sigma"]),
               "n": int(generated["n"]), "n_reference": int(reference["n"])}
    pr = fid.precision_recall(reference["features"], np.concatenate(pools), k=pr_k)
    metrics.update(precision=pr["precision"], recall=pr["recall"], pr_k=pr_k)
    if logits:
        score = fid.inception_score(logits=np.concatenate(logits),
                                    splits=min(10, metrics["n"]))
        metrics.update(inception_score=score["is_mean"], inception_score_std=score["is_std"])
    if classify is not None:
        per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
        metrics.update(class_accuracy=float(np.trace(confusion)) / metrics["n"],
                       class_accuracy_per_class=[round(float(a), 4) for a in per_class],
                       class_confusion=confusion.tolist())
    metrics.update(plan_gflops(model, plan))
    metrics.update(decode_seconds_per_image=decode_seconds / metrics["n"],
                   feature_seconds_per_image=feature_seconds / metrics["n"],
                   note=fid.SMALL_SAMPLE_NOTE)
    return metrics, np.stack(kept)


class TokenizerDecoder:
    """decode_fn of a VQGAN: int tokens [B, h, w] -> float images [B, H, W, C] in [0, 1]."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.grid_shape = tuple(tokenizer.grid_shape)

    def __call__(self, tokens):
        import tensorflow as tf
        return np.asarray(self.tokenizer.decode(tf.constant(tokens, tf.int32)))


def tokenizer_decoder(model, tokenizer):
    """TokenizerDecoder of `tokenizer` for `model`'s tokens; ValueError when they do not fit."""
    if math.prod(tokenizer.grid_shape) != model.num_tokens:
        raise ValueError(f"tokenizer grid {tuple(tokenizer.grid_shape)} does not match the "
                         f"transformer's {model.num_tokens} tokens")
    if tokenizer.codebook_size != model.codebook_size:
        raise ValueError(f"tokenizer codebook {tokenizer.codebook_size} differs from the "
                         f"transformer's {model.codebook_size}")
    return TokenizerDecoder(tokenizer)


def load_generator(model_dir, tokenizer_dir):
    """(trained MaskGitTransformer, TokenizerDecoder) from training output folders."""
    model = saving.load_transformer(model_dir)
    return model, tokenizer_decoder(model, saving.load_tokenizer(tokenizer_dir))
