"""PNG outputs: sample grids and metric curves."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ddrl_framework.kit.io import atomic_write_bytes


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _canvas(tiles: Tensor, cols: int, pad: int) -> Tensor:
    """Tiles ``[N, C, h, w]`` laid out ``cols`` per row on a white canvas."""
    n, channels, h, w = tiles.shape
    rows = math.ceil(n / cols)
    canvas = torch.ones(channels, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        canvas[:, top : top + h, left : left + w] = tile
    return canvas


def _image(canvas: Tensor) -> Image.Image:
    array = (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array.squeeze(2) if canvas.shape[0] == 1 else array)


def _upscaled(pixels: Tensor, min_tile: int) -> Tensor:
    scale = max(1, math.ceil(min_tile / max(pixels.shape[-2:])))
    return torch.nn.functional.interpolate(pixels.float().cpu(), scale_factor=scale, mode="nearest")


def save_grid(pixels: Tensor, path: Path, min_tile: int = 32, pad: int = 2) -> None:
    """Save images ``[N, C, H, W]`` in [0, 1] as a square-ish grid, each tile upscaled (nearest) to
    at least ``min_tile`` pixels. Videos ``[N, C, T, H, W]`` become frame strips (one row per
    video, one column per frame) and, beside the PNG, an animated GIF of the videos side by side."""
    if pixels.ndim == 5:
        return _save_video_grid(pixels, path, min_tile, pad)
    tiles = _upscaled(pixels, min_tile)
    atomic_write_bytes(path, _png_bytes(_image(_canvas(tiles, math.ceil(math.sqrt(len(tiles))), pad))))


def _save_video_grid(videos: Tensor, path: Path, min_tile: int, pad: int) -> None:
    n, channels, frames, height, width = videos.shape
    tiles = _upscaled(videos.transpose(1, 2).flatten(0, 1), min_tile)  # [N * T, C, h, w], video-major
    atomic_write_bytes(path, _png_bytes(_image(_canvas(tiles, frames, pad))))
    per_frame = tiles.view(n, frames, *tiles.shape[1:]).transpose(0, 1)  # [T, N, C, h, w]
    cols = math.ceil(math.sqrt(n))
    images = [_image(_canvas(frame, cols, pad)) for frame in per_frame]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=200, loop=0)
    atomic_write_bytes(Path(path).with_suffix(".gif"), buffer.getvalue())


def plot_metrics(records: Sequence[dict], keys: Sequence[str], path: Path, title: str = "") -> None:
    """One panel per metric key against ``iteration``; ``<key>`` with ``<key>_std`` gets a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in records)]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        rows = [r for r in records if key in r]
        x = np.array([r["iteration"] for r in rows])
        y = np.array([r[key] for r in rows], dtype=float)
        ax.plot(x, y, lw=1.5)
        std_key = key.replace("_mean", "_std")
        if std_key != key and all(std_key in r for r in rows):
            s = np.array([r[std_key] for r in rows], dtype=float)
            ax.fill_between(x, y - s, y + s, alpha=0.2)
        ax.set_xlabel("iteration")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as a PNG atomically, and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
