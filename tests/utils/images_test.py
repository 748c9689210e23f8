"""Image grids, clip rows, token maps and PNG files."""
import numpy as np
import pytest
from PIL import Image

from magnets_tf.utils import images


def test_image_grid_layout_gaps_and_empty_cells():
    batch = np.stack([np.full((2, 3, 1), i / 4.0) for i in range(5)])
    grid = images.image_grid(batch, columns=2)
    assert grid.shape == (6, 6, 1) and grid.dtype == np.uint8
    assert grid[0, 3, 0] == round(0.25 * 255) and grid[4, 0, 0] == 255  # image 4 = 1.0
    assert grid[4, 3, 0] == 255  # the empty sixth cell is white
    gapped = images.image_grid(np.zeros((5, 4, 4, 3)), gap=1)
    assert gapped.shape == (2 * 5 - 1, 3 * 5 - 1, 3)  # near-square 2x3 layout, 1px gaps
    assert gapped[4, 0, 0] == 255 and gapped[0, 0, 0] == 0
    with pytest.raises(ValueError, match="non-empty"):
        images.image_grid(np.zeros((0, 2, 2, 1)))


def test_clip_grid_puts_each_clip_on_a_row():
    clips = np.zeros((2, 3, 4, 5, 1), np.uint8)
    clips[1] = 200
    grid = images.clip_grid(clips)
    assert grid.shape == (2 * 4, 3 * 5, 1)
    assert grid[:4].max() == 0 and grid[4:].min() == 200


def test_token_images_colour_each_code():
    tokens = np.arange(8).reshape(2, 2, 2)
    maps = images.token_images(tokens, codebook_size=8, cell=3)
    assert maps.shape == (2, 6, 6, 3) and maps.dtype == np.uint8
    assert len({tuple(maps[i // 4, (i % 4) // 2 * 3, i % 2 * 3]) for i in range(8)}) == 8


def test_write_png_round_trip(tmp_path):
    grey = images.image_grid(np.random.default_rng(0).uniform(size=(6, 28, 28, 1)), columns=4)
    path = images.write_png(tmp_path / "out" / "grid.png", grey)
    loaded = np.asarray(Image.open(path))
    assert loaded.shape == (2 * 28, 4 * 28)
    np.testing.assert_array_equal(loaded, grey[..., 0])
    with pytest.raises(ValueError, match="PNG"):
        images.write_png(tmp_path / "bad.png", np.zeros((2, 2, 2)))


def test_write_figure_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = images.write_figure(tmp_path / "plot.png", figure)
    assert Image.open(path).format == "PNG"
    assert not plt.fignum_exists(figure.number)


def test_clip_animation_and_gif_round_trip(tmp_path):
    from PIL import Image, ImageSequence

    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (3, 4, 5, 6, 1), dtype=np.uint8)  # 3 clips of 4 frames
    frames = images.clip_animation(clips, columns=3, gap=1)
    assert frames.shape == (4, 5, 3 * 6 + 2, 1)
    np.testing.assert_array_equal(frames[2, :, 7:13], clips[1, 2])
    path = images.write_gif(str(tmp_path / "clips.gif"), frames, fps=5)
    with Image.open(path) as gif:
        read = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
        assert gif.info["duration"] == 200 and gif.info.get("loop") == 0
    assert len(read) == 4
    np.testing.assert_array_equal(np.stack(read), frames[..., 0])  # grayscale is exact
    colour = images.write_gif(str(tmp_path / "rgb.gif"), rng.uniform(size=(2, 4, 4, 3)))
    assert Image.open(colour).n_frames == 2
    for bad, message in [(np.zeros((2, 4, 4, 2)), r"\[T, H, W, 1\|3\]"),
                         (np.zeros((0, 4, 4, 1)), r"\[T, H, W, 1\|3\]")]:
        with pytest.raises(ValueError, match=message):
            images.write_gif(str(tmp_path / "bad.gif"), bad)
    with pytest.raises(ValueError, match="fps must be positive"):
        images.write_gif(str(tmp_path / "bad.gif"), frames, fps=0)
    with pytest.raises(ValueError, match=r"\[S, T, H, W, C\]"):
        images.clip_animation(clips[0])
    assert not (tmp_path / "bad.gif").exists()


def test_to_unit_float_scales_uint8_and_keeps_floats():
    np.testing.assert_allclose(images.to_unit_float(np.array([0, 51, 255], np.uint8)),
                               [0.0, 0.2, 1.0])
    halves = np.full((2, 2), 0.5, np.float64)
    out = images.to_unit_float(halves)
    assert out.dtype == np.float32 and np.all(out == 0.5)
