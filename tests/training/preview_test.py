"""Preview sampler: fixed shapes, every token decoded, deterministic; image grids."""
import numpy as np
import tensorflow as tf

from magnets_tf.models.presets import build_transformer
from magnets_tf.training import preview


def test_sampler_fills_every_token_and_is_seeded():
    tf.keras.utils.set_random_seed(0)
    model = build_transformer("tiny", codebook_size=16, num_classes=10, num_tokens=6,
                              num_layers=1, factors=(1, 2))
    sampler = preview.PreviewSampler(model, num_steps=3)
    for factor in (1, 2):
        tokens = sampler.sample([0, 1, 2], factor=factor, seed=4).numpy()
        assert tokens.shape == (3, 6) and tokens.min() >= 0 and tokens.max() < 16
        np.testing.assert_array_equal(tokens, sampler.sample([0, 1, 2], factor=factor,
                                                             seed=4).numpy())
    assert not np.array_equal(sampler.sample([0, 1, 2], seed=4).numpy(),
                              sampler.sample([0, 1, 2], seed=5).numpy())


def test_image_grid_and_token_images():
    images = preview.token_images(np.arange(8).reshape(2, 4), (2, 2), codebook_size=8, scale=3)
    assert images.shape == (2, 6, 6, 1) and images.max() == 1.0
    grid = preview.image_grid(np.zeros((5, 4, 4, 3)))
    assert grid.shape == (2 * 5 - 1, 3 * 5 - 1, 3)  # 2x3 layout with 1px gaps
    assert grid[4, 0, 0] == 1.0 and grid[0, 0, 0] == 0.0
