"""Image grids, PNG files and GIFs: how samples, reconstructions and clips are shown to
people."""
import numpy as np

from magnets_tf.utils import files


def to_uint8(images):
    """Floats in [0, 1] (clipped) or uint8 -> uint8, same shape."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.round(np.clip(images.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def to_unit_float(images):
    """float32 images in [0, 1] of uint8 [0, 255] or float [0, 1] images (or clips)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    return images.astype(np.float32)


def image_grid(images, columns=None, gap=0):
    """[N, H, W, C] floats in [0, 1] or uint8 -> one uint8 grid [rows*H + (rows-1)*gap, ...].

    columns: images per row (default: a near-square layout). Gaps and empty cells are white.
    """
    images = to_uint8(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty [N, H, W, C] batch, got {images.shape}")
    n, h, w, c = images.shape
    columns = min(int(columns or int(np.ceil(np.sqrt(n)))), n)
    if columns <= 0:
        raise ValueError(f"columns must be positive, got {columns}")
    rows = -(-n // columns)
    grid = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, q = divmod(i, columns)
        grid[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = image
    return grid


def clip_grid(clips, gap=0):
    """Clips [S, T, H, W, C] -> one uint8 grid whose row i holds clip i's T frames."""
    clips = np.asarray(clips)
    if clips.ndim != 5:
        raise ValueError(f"clips must be [S, T, H, W, C], got shape {clips.shape}")
    s, t = clips.shape[:2]
    return image_grid(clips.reshape(s * t, *clips.shape[2:]), columns=t, gap=gap)


def clip_animation(clips, columns=None, gap=0):
    """Clips [S, T, H, W, C] -> T uint8 grids [T, rows*H + ..., ...]: frame t of the
    animation shows frame t of every clip, laid out as `image_grid` lays out S images."""
    clips = np.asarray(clips)
    if clips.ndim != 5 or not clips.shape[0] or not clips.shape[1]:
        raise ValueError(f"clips must be a non-empty [S, T, H, W, C] batch, got shape "
                         f"{clips.shape}")
    return np.stack([image_grid(clips[:, t], columns, gap) for t in range(clips.shape[1])])


def write_gif(path, frames, fps=8):
    """Writes frames [T, H, W, C] (uint8 or floats in [0, 1]; C = 1 or 3) as a looping
    animated GIF atomically; returns the path. A GIF holds 256 colours per frame:
    grayscale is exact, colour frames are quantized by Pillow."""
    from PIL import Image
    pixels = to_uint8(frames)
    if pixels.ndim != 4 or not len(pixels) or pixels.shape[-1] not in (1, 3):
        raise ValueError(f"a GIF needs frames [T, H, W, 1|3], got shape {pixels.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    pictures = [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]

    def save(tmp):
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:],
                         duration=int(round(1000 / fps)), loop=0)
    return files.atomic_write(path, save, suffix=".gif")


def token_images(tokens, codebook_size, cell=8):
    """Token grids [S, h, w] -> uint8 RGB [S, h*cell, w*cell, 3], each code a fixed colour.

    How token maps are shown when no tokenizer decodes them to pixels."""
    from matplotlib import colormaps
    tokens = np.asarray(tokens)
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [S, h, w] grids, got shape {tokens.shape}")
    colors = (colormaps["viridis"](np.linspace(0, 1, codebook_size))[:, :3] * 255).round()
    images = colors.astype(np.uint8)[np.clip(tokens, 0, codebook_size - 1)]
    return np.repeat(np.repeat(images, cell, axis=1), cell, axis=2)


def write_png(path, image):
    """Writes one image [H, W, C] (uint8 or floats in [0, 1]) to a PNG atomically."""
    from PIL import Image
    pixels = to_uint8(image)
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4):
        raise ValueError(f"a PNG needs an [H, W, 1|3|4] image, got shape {pixels.shape}")
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    return files.atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"), suffix=".png")


def write_figure(path, figure, dpi=120):
    """Writes a matplotlib figure to the PNG `path` atomically and closes it (also when the
    write fails); returns the path."""
    import matplotlib.pyplot as plt
    try:
        return files.atomic_write(path, lambda tmp: figure.savefig(
            tmp, dpi=dpi, bbox_inches="tight", format="png"), suffix=".png")
    finally:
        plt.close(figure)


def save_image_grid(images, path, columns=None, gap=0):
    """Writes `image_grid(images, columns, gap)` to the PNG `path`; returns the path."""
    return write_png(path, image_grid(images, columns, gap))
