"""Metrics ``image-statistics`` and ``video-statistics``: cheap pixel statistics that expose the
known reward hacks, each the mean over the evaluation samples (videos: over all their frames).

* ``saturation``: HSV saturation ``(max - min) / max`` of each pixel (0 where ``max = 0``);
* ``colorfulness``: Hasler and Suesstrunk (2003), ``sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 +
  mu_yb^2)`` with ``rg = R - G`` and ``yb = (R + G) / 2 - B``, on the paper's 0-255 scale (about
  33: "moderately", 59: "quite", 82: "highly colorful");
* ``exposure_mean``: the mean luminance (Rec. 601 luma, in [0, 1]); ``exposure_clipped_high`` /
  ``exposure_clipped_low``: the fraction of pixels whose luminance is within ``clip_margin`` of
  1 / of 0 (blown highlights / crushed shadows);
* ``contrast``: the RMS contrast, the standard deviation of each image's luminance;
* ``hf_energy``: the fraction of each image's spectral energy (mean removed) above ``cutoff``
  cycles per pixel (grids, checkerboards and noise score high; 0 for a flat image).

``video-statistics`` (videos ``[B, C, T, H, W]``): ``frame_difference``, the mean absolute pixel
change between adjacent frames, and ``flicker``, the mean absolute change of each frame's mean
luminance between adjacent frames.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import EvalContext
from ddrl_framework.hookspecs import hookimpl

LUMA = (0.299, 0.587, 0.114)  # Rec. 601


@hookimpl
def register_metrics(register):
    register("image-statistics", ImageStatistics)
    register("video-statistics", VideoStatistics)


def as_images(samples: Tensor) -> Tensor:
    """``[N, C, H, W]`` float64 on the CPU; videos ``[B, C, T, H, W]`` become their frames."""
    images = samples.transpose(1, 2).flatten(0, 1) if samples.ndim == 5 else samples
    return images.detach().double().cpu().clamp(0, 1)


def rgb(images: Tensor) -> Tensor:
    """Three channels: grayscale ``C = 1`` is repeated (its saturation and colorfulness are 0)."""
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]


def luminance(images: Tensor) -> Tensor:
    """``[N, H, W]``: Rec. 601 luma of RGB, the channel itself of grayscale."""
    if images.shape[1] == 1:
        return images[:, 0]
    weights = torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)
    return (images[:, :3] * weights).sum(1)


def saturation(images: Tensor) -> Tensor:
    """HSV saturation per image ``[N]``, the mean over pixels."""
    x = rgb(images)
    high, low = x.max(1).values, x.min(1).values
    return torch.where(high > 0, (high - low) / high.clamp(min=1e-12), torch.zeros_like(high)).flatten(1).mean(1)


def colorfulness(images: Tensor) -> Tensor:
    """Hasler and Suesstrunk's colorfulness per image ``[N]``, on the 0-255 scale."""
    x = rgb(images) * 255
    rg = (x[:, 0] - x[:, 1]).flatten(1)
    yb = (0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]).flatten(1)
    spread = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    level = (rg.mean(1).square() + yb.mean(1).square()).sqrt()
    return spread + 0.3 * level


def high_frequency_energy(images: Tensor, cutoff: float) -> Tensor:
    """The fraction ``[N]`` of each image's luminance power spectrum (mean removed) at a radial
    frequency above ``cutoff`` cycles per pixel (Nyquist: 0.5); 0 for a flat image."""
    y = luminance(images)
    y = y - y.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(y).abs().square()
    fy = torch.fft.fftfreq(y.shape[1], dtype=y.dtype).view(-1, 1)
    fx = torch.fft.fftfreq(y.shape[2], dtype=y.dtype).view(1, -1)
    high = (fx.square() + fy.square()).sqrt() > cutoff
    total = power.flatten(1).sum(1)
    return torch.where(total > 1e-12, (power * high).flatten(1).sum(1) / total.clamp(min=1e-12),
                       torch.zeros_like(total))


@attrs.frozen(kw_only=True)
class ImageStatistics:
    """Saturation, colorfulness, exposure, contrast and high-frequency energy (module docstring)."""

    clip_margin: float = attrs.field(default=0.02, validator=[attrs.validators.ge(0.0), attrs.validators.lt(0.5)])
    cutoff: float = attrs.field(default=0.25, validator=[attrs.validators.gt(0.0), attrs.validators.lt(0.5)])
    needs_reference = False

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        return self.statistics(as_images(context.samples))

    def statistics(self, images: Tensor) -> dict[str, float]:
        y = luminance(images)
        return {
            "saturation": float(saturation(images).mean()),
            "colorfulness": float(colorfulness(images).mean()),
            "exposure_mean": float(y.mean()),
            "exposure_clipped_high": float((y >= 1 - self.clip_margin).double().mean()),
            "exposure_clipped_low": float((y <= self.clip_margin).double().mean()),
            "contrast": float(y.flatten(1).std(1, unbiased=False).mean()),
            "hf_energy": float(high_frequency_energy(images, self.cutoff).mean()),
        }


@attrs.frozen(kw_only=True)
class VideoStatistics:
    """Adjacent-frame pixel change and luminance flicker of videos (module docstring)."""

    needs_reference = False

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        videos = context.samples
        if videos.ndim != 5 or videos.shape[2] < 2:
            raise ValueError(f"video-statistics takes videos [B, C, T >= 2, H, W]; got {tuple(videos.shape)} "
                             "(for images use image-statistics)")
        x = videos.detach().double().cpu().clamp(0, 1)
        frames = x.transpose(1, 2)  # [B, T, C, H, W]
        change = (frames[:, 1:] - frames[:, :-1]).abs().mean()
        level = luminance(frames.flatten(0, 1)).flatten(1).mean(1).view(x.shape[0], x.shape[2])
        return {"frame_difference": float(change), "flicker": float((level[:, 1:] - level[:, :-1]).abs().mean())}
