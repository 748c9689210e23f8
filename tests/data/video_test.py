"""Video data: Moving MNIST protocol and determinism, opencv-doc clips, mocked tfds video."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from magnets_tf.data import datasets, video


def test_trajectories_stay_in_box_reflect_and_keep_speed():
    rng = np.random.default_rng(0)
    traj = video.bouncing_trajectories(rng, 50, 40, 2)
    assert traj.shape == (50, 40, 2, 2)
    assert traj.min() >= 0.0 and traj.max() <= 1.0
    steps = np.linalg.norm(np.diff(traj, axis=1), axis=-1)
    # Away from the walls a digit moves exactly step_length per frame.
    free = (traj[:, 1:] > 0.1).all(-1) & (traj[:, 1:] < 0.9).all(-1) & \
           (traj[:, :-1] > 0.1).all(-1) & (traj[:, :-1] < 0.9).all(-1)
    np.testing.assert_allclose(steps[free], video.STEP_LENGTH, rtol=1e-9)
    # Every digit that reached a wall bounced back (its coordinate moved away again).
    hits = (traj[:, 1:-1] == 0.0) | (traj[:, 1:-1] == 1.0)
    assert hits.any()
    after = traj[:, 2:][hits]
    at = traj[:, 1:-1][hits]
    assert np.all(np.abs(after - at) > 0)


def test_moving_mnist_protocol_uses_real_digits_max_combined():
    digits, labels = datasets.load_arrays("mnist5k", "test")
    videos, clip_labels = video.moving_mnist(digits, labels, 6, num_frames=20, frame_size=64,
                                             num_digits=2, seed=3)
    assert videos.shape == (6, 20, 64, 64, 1) and videos.dtype == np.uint8
    assert clip_labels.dtype == np.int32 and set(clip_labels) <= set(range(10))
    # Rebuild clip 0 frame 0 by hand from the same random draws: max of the two digits.
    rng = np.random.default_rng(3)
    picks = rng.integers(0, digits.shape[0], size=(6, 2))
    traj = video.bouncing_trajectories(rng, 6, 20, 2)
    frame = np.zeros((64, 64, 1), np.uint8)
    for d in range(2):
        y, x = (traj[0, 0, d] * 36).astype(int)
        frame[y:y + 28, x:x + 28] = np.maximum(frame[y:y + 28, x:x + 28], digits[picks[0, d]])
    np.testing.assert_array_equal(videos[0, 0], frame)
    assert clip_labels[0] == labels[picks[0, 0]]
    assert videos.max() == 255


def test_moving_mnist_deterministic_and_seeded():
    a, la = video.moving_mnist_arrays("moving_mnist", "train", num_videos=4, seed=1)
    b, lb = video.moving_mnist_arrays("moving_mnist", "train", num_videos=4, seed=1)
    c, _ = video.moving_mnist_arrays("moving_mnist", "train", num_videos=4, seed=2)
    t, _ = video.moving_mnist_arrays("moving_mnist", "test", num_videos=4, seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c) and not np.array_equal(a, t)


def test_moving_mnist_configurable_frames_size_digits():
    v, _ = video.moving_mnist_arrays("moving_fashion_mnist", "test", num_videos=2,
                                     num_frames=8, frame_size=(48, 40), num_digits=3)
    assert v.shape == (2, 8, 48, 40, 1)
    with pytest.raises(ValueError, match="smaller than"):
        video.moving_mnist_arrays("moving_mnist", "test", num_videos=1, frame_size=20)
    with pytest.raises(ValueError, match="splits"):
        video.moving_mnist_arrays("moving_mnist", "validation", num_videos=1)


def test_video_dataset_moving_mnist_batches():
    ds = video.video_dataset("moving_mnist", "test", 3, num_frames=8, frame_size=32,
                             num_videos=5)
    batches = list(ds)
    assert [b["video"].shape[0] for b in batches] == [3, 2]
    v = batches[0]["video"]
    assert v.shape == (3, 8, 32, 32, 1) and v.dtype == tf.float32
    assert float(tf.reduce_min(v)) >= 0.0 and float(tf.reduce_max(v)) <= 1.0
    assert batches[0]["label"].dtype == tf.int32


def test_opencv_clips_real_footage_split_disjoint():
    if not os.path.isdir(video.OPENCV_DATA_DIR):
        pytest.skip("opencv-doc is not installed")
    train, train_labels = video.opencv_clip_arrays("train", num_frames=8, frame_size=32,
                                                   frame_stride=2)
    test, test_labels = video.opencv_clip_arrays("test", num_frames=8, frame_size=32,
                                                 frame_stride=2)
    every, _ = video.opencv_clip_arrays("all", num_frames=8, frame_size=32, frame_stride=2)
    assert train.shape[1:] == (8, 32, 32, 3) and train.dtype == np.uint8
    assert train.shape[0] + test.shape[0] == every.shape[0]
    assert set(train_labels) == set(test_labels) == {0, 1, 2}
    # Real footage: consecutive frames differ, but far less than random frames do.
    diff = np.abs(np.diff(train.astype(np.float32), axis=1)).mean()
    assert 0.5 < diff < 40
    # No test clip equals a train clip.
    flat_train = {c.tobytes() for c in train}
    assert not any(c.tobytes() in flat_train for c in test)
    ds = video.video_dataset("opencv_clips", "test", 4, num_frames=8, frame_size=32,
                             frame_stride=2)
    batch = next(iter(ds))
    assert batch["video"].shape == (4, 8, 32, 32, 3)


def test_opencv_missing_files_clear_error(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="opencv-doc"):
        video.opencv_clip_arrays("train", data_dir=str(tmp_path))


def test_sample_clip_stride_center_and_loop():
    frames = tf.reshape(tf.range(10), [10, 1, 1, 1])
    clip = video.sample_clip(frames, 3, frame_stride=2)
    assert clip[:, 0, 0, 0].numpy().tolist() == [2, 4, 6]  # centred start (10-5)//2
    looped = video.sample_clip(frames, 4, frame_stride=4)  # span 13 > 10: loops
    assert looped[:, 0, 0, 0].numpy().tolist() == [0, 4, 8, 2]
    starts = {int(video.sample_clip(frames, 3, 2, True, tf.constant([s, 0]))[0, 0, 0, 0])
              for s in range(20)}
    assert starts <= set(range(6)) and len(starts) > 1


def test_tfds_ucf101_pipeline_mocked():
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = video.video_dataset("ucf101", "train", 2, num_frames=4, frame_size=16,
                                 frame_stride=2, random_crop_flip=True, seed=1)
        batch = next(iter(ds))
    assert batch["video"].shape == (2, 4, 16, 16, 3) and batch["video"].dtype == tf.float32
    assert batch["label"].dtype == tf.int32
    assert float(tf.reduce_max(batch["video"])) <= 1.0
    assert all(0 <= int(l) < 101 for l in batch["label"])


def test_clip_arrays_serves_every_offline_clip_set():
    clips, labels = video.clip_arrays("moving_mnist", "test", 3, (32, 40), num_videos=2)
    assert clips.shape == (2, 3, 32, 40, 1) and clips.dtype == np.uint8 and len(labels) == 2
    real, _ = video.clip_arrays("opencv_clips", "test", 4, 16, frame_stride=2)
    assert real.shape[1:] == (4, 16, 16, 3)
    with pytest.raises(ValueError, match="unknown clip set 'ucf101'; known: "):
        video.clip_arrays("ucf101", "test", 4, 16)


def test_tfds_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown video data set"):
        video.video_dataset("no_such_video_set_xyz", "train", 2)
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(ValueError, match="needs 'video'"):
            video.video_dataset("mnist", "train", 2)


def test_condition_tokens_do_not_see_the_future():
    """Changing frames after the condition leaves the condition tokens unchanged."""
    from magnets_tf.models.video_tokenizer import VideoTokenizer
    tokenizer = VideoTokenizer(video_shape=(4, 8, 8, 1), filters=8,
                               channel_multipliers=(1, 1, 2), num_res_blocks=1,
                               temporal_downsample=(True, False),
                               spatial_downsample=(False, True), embedding_dim=4,
                               codebook_size=16, norm_groups=4)
    rng = np.random.default_rng(0)
    clips = rng.uniform(size=[3, 4, 8, 8, 1]).astype(np.float32)
    other_future = clips.copy()
    other_future[:, 2:] = rng.uniform(size=[3, 2, 8, 8, 1])
    a = video.clip_tokens(tokenizer, clips, condition_frames=2, num_condition_tokens=16)
    b = video.clip_tokens(tokenizer, other_future, condition_frames=2, num_condition_tokens=16)
    np.testing.assert_array_equal(a[:, :16], b[:, :16])
    held = video.hold_last_condition_frame(clips, 2)
    np.testing.assert_array_equal(held[:, 3], clips[:, 1])
    # The targets are the real clip's tokens.
    full = np.asarray(tokenizer.encode(clips)).reshape(3, -1)
    np.testing.assert_array_equal(a[:, 16:], full[:, 16:])


def test_condition_frames_are_whole_latent_frames():
    # 16-frame clips, 4x4x4 token grid: one latent frame = 16 tokens = 4 pixel frames.
    assert video.condition_frames(0, (16, 8, 8, 1), (4, 4, 4)) == 0
    assert video.condition_frames(32, (16, 8, 8, 1), (4, 4, 4)) == 8
    with pytest.raises(ValueError, match="whole latent frames"):
        video.condition_frames(20, (16, 8, 8, 1), (4, 4, 4))
    with pytest.raises(ValueError, match="whole latent frames"):
        video.condition_frames(64, (16, 8, 8, 1), (4, 4, 4))


def test_condition_token_count_covers_the_condition_frames():
    # 16 frames -> 4 latent frames of 16x16: K600's 5 frames need latent frames 0 and 1.
    assert video.condition_token_count(5, (16, 128, 128, 3), (4, 16, 16)) == 512
    assert video.condition_token_count(4, (16, 128, 128, 3), (4, 16, 16)) == 256
    assert video.condition_token_count(12, (16, 64, 64, 1), (4, 8, 8)) == 192
    for frames in (0, -2, 13, 16):
        with pytest.raises(ValueError, match="must be positive and leave at least one of "
                                             "the 4 latent frames"):
            video.condition_token_count(frames, (16, 128, 128, 3), (4, 16, 16))
    with pytest.raises(ValueError, match="do not divide"):
        video.condition_token_count(2, (15, 8, 8, 1), (4, 2, 2))
