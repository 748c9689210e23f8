"""Reconstruction FID of a VQ tokenizer: the floor under any generator on its tokens.

A generator that predicted every token perfectly would produce the tokenizer's
reconstructions of real images; their FID against the real images is therefore the best
FID any transformer on these tokens can reach at the same n (FID is biased upward at small
n, so compare at equal n). Reported with PSNR and codebook usage of the same images.
"""
import math

import numpy as np
import tensorflow as tf
import tqdm

from magnets_tf.evaluation import fid
from magnets_tf.models.vqgan import codebook_usage
from magnets_tf.training.tokenizer_trainer import psnr_per_image
from magnets_tf.utils import images as images_lib


def reconstruct(tokenizer, images, batch_size, progress=True):
    """(tokens, reconstructions in [0, 1]) of uint8 or [0, 1] float images [N, H, W, C]."""
    if len(images) == 0:
        raise ValueError("no images to reconstruct")

    @tf.function(reduce_retracing=True)
    def run(batch):
        tokens = tokenizer.encode(batch)
        return tokens, tokenizer.decode(tokens)

    tokens, recons = [], []
    for start in tqdm.trange(0, len(images), batch_size, desc="reconstruct", unit="batch",
                             disable=not progress, leave=False):
        batch = images_lib.to_unit_float(images[start:start + batch_size])
        t, r = run(tf.constant(batch))
        tokens.append(np.asarray(t))
        recons.append(np.clip(np.asarray(r, np.float32), 0.0, 1.0))
    return np.concatenate(tokens), np.concatenate(recons)


def evaluate_reconstruction(tokenizer, images, extractor, reference, batch_size=100,
                            pr_k=3, progress=True, keep_images=16, real_features=None):
    """Scores the tokenizer's reconstructions of `images` against `reference` (a dict of
    `fid.reference_statistics`: mu, sigma, n, features).

    Returns (metrics, grid rows): metrics rfid (FID of the reconstructions), fid_real (FID
    of the same real images, what n alone costs), precision, recall, n, n_reference,
    psnr_db, psnr_of_mean_mse_db, codebook_usage, codebook_size, grid, note; grid rows are
    the first `keep_images` inputs over their reconstructions. `real_features`: the
    images' features when already known (e.g. `images` is the reference set itself).
    """
    tokens, recons = reconstruct(tokenizer, images, batch_size, progress)
    real = images_lib.to_unit_float(images)
    fake_features = extractor.features(recons, progress=progress,
                                       description="reconstruction features")["pool"]
    if real_features is None:
        real_features = extractor.features(real, progress=progress,
                                           description="input features")["pool"]

    def distance(features):
        stats = fid.feature_statistics(features)
        return fid.frechet_distance(stats["mu"], stats["sigma"], reference["mu"],
                                    reference["sigma"])

    pr = fid.precision_recall(reference["features"], fake_features, k=pr_k)
    mse = float(np.mean((real - recons) ** 2))
    metrics = dict(rfid=distance(fake_features), fid_real=distance(real_features),
                   n=int(len(images)), n_reference=int(reference["n"]),
                   precision=pr["precision"], recall=pr["recall"], pr_k=pr_k,
                   psnr_db=float(np.mean(psnr_per_image(real, recons))),
                   psnr_of_mean_mse_db=float(10 * math.log10(1.0 / max(mse, 1e-10))),
                   codebook_usage=codebook_usage(tokens, tokenizer.codebook_size),
                   codebook_size=int(tokenizer.codebook_size),
                   grid=list(tokenizer.grid_shape), note=fid.SMALL_SAMPLE_NOTE)
    shown = min(keep_images, len(images))
    return metrics, np.concatenate([real[:shown], recons[:shown]])
