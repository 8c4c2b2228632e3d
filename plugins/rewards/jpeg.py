"""Rewards ``jpeg-compressibility`` and ``jpeg-incompressibility``: encoded JPEG size, as in DDPO.

The size is in kilobytes at the given quality; compressibility is its negative.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_reward_models(register):
    register("jpeg-compressibility", JpegCompressibility)
    register("jpeg-incompressibility", JpegIncompressibility)


def jpeg_kilobytes(image: Tensor, quality: int) -> float:
    """One image ``[C, H, W]`` in [0, 1] (C = 1 or 3) -> its JPEG size in kB."""
    from PIL import Image  # here, not at registration: `ddrl plugins` stays fast

    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"JPEG rewards take images [B, C, H, W] with C in (1, 3); got {tuple(image.shape)}")
    pixels = (image.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    mode = "L" if pixels.shape[2] == 1 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(pixels.squeeze(2) if mode == "L" else pixels, mode=mode).save(
        buffer, format="JPEG", quality=quality
    )
    return buffer.tell() / 1000


@attrs.frozen(kw_only=True)
class JpegIncompressibility:
    quality: int = 95

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        sizes = [jpeg_kilobytes(image, self.quality) for image in samples]
        return torch.tensor(sizes, dtype=torch.float32, device=samples.device)


@attrs.frozen(kw_only=True)
class JpegCompressibility(JpegIncompressibility):
    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        return -super().__call__(samples, prompts, metadata)
