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


def grid_image(pixels: Tensor, min_tile: int = 32, pad: int = 2) -> Image.Image:
    """Images ``[N, C, H, W]`` in [0, 1] as one square-ish grid, each tile upscaled (nearest) to at
    least ``min_tile`` pixels; videos ``[N, C, T, H, W]`` as frame strips (one row per video)."""
    if pixels.ndim == 5:
        tiles = _upscaled(pixels.transpose(1, 2).flatten(0, 1), min_tile)  # [N * T, C, h, w], video-major
        return _image(_canvas(tiles, pixels.shape[2], pad))
    tiles = _upscaled(pixels, min_tile)
    return _image(_canvas(tiles, math.ceil(math.sqrt(len(tiles))), pad))


def video_gif(videos: Tensor, min_tile: int = 32, pad: int = 2, duration_ms: int = 200) -> bytes:
    """Videos ``[N, C, T, H, W]`` in [0, 1] side by side as one animated GIF (looping)."""
    n, _, frames = videos.shape[:3]
    tiles = _upscaled(videos.transpose(1, 2).flatten(0, 1), min_tile)
    per_frame = tiles.view(n, frames, *tiles.shape[1:]).transpose(0, 1)  # [T, N, C, h, w]
    cols = math.ceil(math.sqrt(n))
    images = [_image(_canvas(frame, cols, pad)) for frame in per_frame]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return buffer.getvalue()


def save_grid(pixels: Tensor, path: Path, min_tile: int = 32, pad: int = 2) -> None:
    """Save :func:`grid_image` as a PNG; for videos also, beside it, :func:`video_gif`."""
    atomic_write_bytes(path, _png_bytes(grid_image(pixels, min_tile, pad)))
    if pixels.ndim == 5:
        atomic_write_bytes(Path(path).with_suffix(".gif"), video_gif(pixels, min_tile, pad))


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
