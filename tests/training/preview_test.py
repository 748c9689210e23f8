"""Training previews: one-factor plans on the production decoder, seeded, every token decoded."""
import os

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.models.presets import build_transformer
from magnets_tf.training import preview
from magnets_tf.training.callbacks import SampleGrids


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return build_transformer("tiny", codebook_size=16, num_classes=10, num_tokens=6,
                             num_layers=1, factors=(1, 2))


def test_preview_plan_runs_one_sub_model_uncached(model):
    plan = preview.preview_plan(model, 2, num_steps=3)
    assert plan.factors == (2, 2, 2) and not plan.use_cache and not any(plan.guided)
    assert all(plan.refresh_steps) and plan.masked_out[-1] == 0
    with pytest.raises(ValueError, match="factor 4"):
        preview.preview_plan(model, 4, num_steps=3)


def test_sample_grids_fill_every_token_seeded_and_write_images(model, tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "tb"))
    grids = SampleGrids(model, writer, every=2, out_dir=str(tmp_path / "samples"),
                        factors=(1, 2), class_ids=[0, 1, 2], grid_shape=(2, 3), num_steps=3,
                        seed=4)
    for factor in (1, 2):
        tokens = grids.sample(factor)
        assert tokens.shape == (3, 6) and tokens.min() >= 0 and tokens.max() < 16
        np.testing.assert_array_equal(tokens, grids.sample(factor))
    other_seed = SampleGrids(model, writer, 2, str(tmp_path / "other"), (1,), [0, 1, 2],
                             (2, 3), num_steps=3, seed=5)
    assert not np.array_equal(grids.sample(1), other_seed.sample(1))
    grids.on_train_begin({"start_step": 2})  # A run resumed at step 2, one step per loop.
    grids.on_train_batch_end(3)  # No multiple of `every` reached: nothing written.
    assert not os.path.exists(tmp_path / "samples")
    grids.on_train_batch_end(4)
    assert sorted(os.listdir(tmp_path / "samples")) == ["step00000004_p1.png",
                                                        "step00000004_p2.png"]
