"""3D video tokenizer: shapes (paper and small scale), straight-through gradients, config
round trip, and that training steps on Moving MNIST reduce the reconstruction error."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.data.video import video_dataset
from magnets_tf.models.video_tokenizer import (PAPER_CONFIG, ResBlock3D, VideoTokenizer,
                                               build_video_tokenizer)


def _traced_shape(fn, spec):
    """Output shape of fn traced on a symbolic input (no compute: paper scale is big)."""
    return tuple(tf.function(fn).get_concrete_function(spec).structured_outputs.shape)


def test_paper_scale_shapes_16x128x128_to_4x16x16():
    model = build_video_tokenizer("paper")
    assert model.video_shape == (16, 128, 128, 3) and model.grid_shape == (4, 16, 16)
    assert model.codebook_size == PAPER_CONFIG["codebook_size"] == 1024
    assert model.num_tokens == 1024  # + 1 class token = the paper's 1025.
    assert _traced_shape(model.encode, tf.TensorSpec([2, 16, 128, 128, 3])) == (2, 4, 16, 16)
    assert _traced_shape(model.decode, tf.TensorSpec([2, 4, 16, 16], tf.int32)) == \
        (2, 16, 128, 128, 3)


@pytest.mark.parametrize("config,shape,grid", [("small_4x8x8", (16, 64, 64, 1), (4, 8, 8)),
                                               ("small_2x8x8", (8, 32, 32, 1), (2, 8, 8))])
def test_small_configs_run(config, shape, grid):
    model = build_video_tokenizer(config, video_shape=shape)
    assert model.grid_shape == grid
    videos = tf.random.uniform([1, *shape], seed=3)
    tokens = model.encode(videos)
    assert tokens.dtype == tf.int32 and tuple(tokens.shape) == (1, *grid)
    assert int(tf.reduce_max(tokens)) < model.codebook_size
    decoded = model.decode(tokens)
    assert tuple(decoded.shape) == (1, *shape)
    assert 0.0 <= float(tf.reduce_min(decoded)) and float(tf.reduce_max(decoded)) <= 1.0
    flat = tf.reshape(tokens, [1, -1])
    np.testing.assert_allclose(model.decode(flat), decoded)


def test_time_only_and_space_only_downsampling():
    model = VideoTokenizer(video_shape=(4, 8, 8, 1), filters=8, channel_multipliers=(1, 1, 2),
                           num_res_blocks=1, temporal_downsample=(True, False),
                           spatial_downsample=(False, True), embedding_dim=4,
                           codebook_size=16, norm_groups=4)
    assert model.grid_shape == (2, 4, 4)
    assert tuple(model.encode(tf.zeros([1, 4, 8, 8, 1])).shape) == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="not divisible"):
        VideoTokenizer(video_shape=(6, 8, 8, 1), channel_multipliers=(1, 2, 2),
                       temporal_downsample=(True, True), spatial_downsample=(True, True))
    with pytest.raises(ValueError, match="temporal_downsample needs 2"):
        VideoTokenizer(video_shape=(8, 8, 8, 1), channel_multipliers=(1, 2, 2),
                       temporal_downsample=(True,), spatial_downsample=(True, True))
    with pytest.raises(ValueError, match="expected videos"):
        model.encode(tf.zeros([1, 4, 8, 9, 1]))


def test_resblock3d_shortcut_on_input():
    block = ResBlock3D(8, norm_groups=4)
    x = tf.random.normal([1, 2, 4, 4, 4], seed=0)
    y = block(x)
    assert tuple(y.shape) == (1, 2, 4, 4, 8)
    h = block.conv1(tf.nn.silu(block.norm1(block.conv0(tf.nn.silu(block.norm0(x))))))
    np.testing.assert_allclose(y, h + block.shortcut(x), atol=1e-5)


def test_straight_through_gradients_reach_the_encoder():
    model = build_video_tokenizer("tiny_test")
    videos = tf.random.uniform([2, *model.video_shape], seed=1)
    with tf.GradientTape() as tape:
        out = model.forward(videos, training=True)
        loss = tf.reduce_mean((out["reconstruction"] - videos) ** 2)
    encoder_vars = model.encoder.trainable_variables
    grads = tape.gradient(loss, encoder_vars)
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0
    # Straight-through: the decoder input equals the quantized codes exactly.
    np.testing.assert_allclose(model.decode(out["tokens"]),
                               tf.clip_by_value(out["reconstruction"], 0, 1), atol=1e-5)


def test_config_round_trip():
    model = build_video_tokenizer("tiny_test")
    clone = VideoTokenizer.from_config(model.get_config())
    clone.build()
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    videos = tf.random.uniform([1, *model.video_shape], seed=2)
    np.testing.assert_array_equal(model.encode(videos), clone.encode(videos))


def test_training_steps_on_moving_mnist_reduce_reconstruction_error(tmp_path):
    from magnets_tf.models.saving import load_tokenizer, save_tokenizer
    from magnets_tf.training.tokenizer_trainer import TokenizerTrainer

    tf.keras.utils.set_random_seed(0)
    model = build_video_tokenizer("small_2x8x8", video_shape=(8, 32, 32, 1))
    data = video_dataset("moving_mnist", "train", 4, num_frames=8, frame_size=32,
                         num_videos=64, shuffle=True, repeat=True, seed=0,
                         drop_remainder=True)
    held_out = next(iter(video_dataset("moving_mnist", "test", 8, num_frames=8,
                                       frame_size=32, num_videos=8)))["video"]

    def error():
        return float(tf.reduce_mean((model(held_out) - held_out) ** 2))

    before = error()
    trainer = TokenizerTrainer(model, str(tmp_path), num_steps=20, learning_rate=3e-3,
                               warmup_steps=5, restart_every=10, log_every=10,
                               image_every=20, checkpoint_every=20)
    trainer.train(data, progress=False)
    after = error()
    print("reconstruction MSE", before, after)
    assert after < 0.6 * before, (before, after)
    save_tokenizer(model, str(tmp_path / "tok"))
    loaded = load_tokenizer(str(tmp_path / "tok"))
    assert isinstance(loaded, VideoTokenizer)
    np.testing.assert_array_equal(loaded.encode(held_out), model.encode(held_out))
