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

from ddrl_framework.checkpoint import atomic_write_bytes


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(pixels: Tensor, path: Path, min_tile: int = 32, pad: int = 2) -> None:
    """Save images ``[N, C, H, W]`` in [0, 1] (videos ``[N, C, T, H, W]``: their first frame) as a
    square-ish grid, each tile upscaled (nearest) to at least ``min_tile`` pixels."""
    if pixels.ndim == 5:
        pixels = pixels[:, :, 0]
    n, channels, height, width = pixels.shape
    scale = max(1, math.ceil(min_tile / max(height, width)))
    tiles = torch.nn.functional.interpolate(pixels.float().cpu(), scale_factor=scale, mode="nearest")
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = tiles.shape[-2:]
    canvas = torch.ones(channels, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h,
               pad + c * (w + pad): pad + c * (w + pad) + w] = tile
    array = (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array.squeeze(2) if channels == 1 else array)
    atomic_write_bytes(path, _png_bytes(image))


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
