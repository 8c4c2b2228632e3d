"""Logger ``tensorboard``: scalars (``train/<key>`` each iteration, ``eval/<key>`` each
evaluation), the evaluation's sample grid and, for videos, an animated GIF, at every evaluation.

Needs the ``tensorboard`` package (``pip install -e ".[tensorboard]"``); it is imported when the
run starts, so registering costs nothing. Look with ``tensorboard --logdir <output_dir>/tensorboard``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl

INSTALL = 'pip install "ddrl-framework[tensorboard]" (or pip install -e ".[tensorboard]" in a checkout)'


@hookimpl
def register_loggers(register):
    register("tensorboard", TensorBoardLogger)


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite-or-not numbers of a record (not ``iteration``; no strings)."""
    return {k: float(v) for k, v in values.items()
            if k != "iteration" and isinstance(v, (int, float)) and not isinstance(v, bool)}


@attrs.define(kw_only=True)
class TensorBoardLogger:
    logdir: str | None = None  # default: <output_dir>/tensorboard
    max_samples: int = attrs.field(default=16, validator=attrs.validators.ge(1))  # per evaluation
    requires = {"tensorboard": INSTALL}
    _writer: Any = attrs.field(default=None, init=False, repr=False)

    def start(self, output_dir: Path, config: Mapping[str, Any]) -> str:
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(self.logdir) if self.logdir else Path(output_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(folder))
        return f"tensorboard --logdir {folder}"

    def log_metrics(self, values: Mapping[str, float], step: int, kind: str) -> None:
        for key, value in scalars(values).items():
            self._writer.add_scalar(f"{kind}/{key}", value, step)

    def log_samples(self, name: str, pixels: Tensor, step: int) -> None:
        from ddrl_framework.evaluation.plots import grid_image, video_gif

        pixels = pixels[: self.max_samples].detach().float().cpu().clamp(0, 1)
        grid = np.asarray(grid_image(pixels).convert("RGB"))
        self._writer.add_image(name, grid, step, dataformats="HWC")
        if pixels.ndim == 5:
            self._add_gif(f"{name}_video", video_gif(pixels), grid.shape, step)

    def _add_gif(self, tag: str, gif: bytes, shape: tuple[int, ...], step: int) -> None:
        """An animated GIF as an image summary (what ``add_video`` writes, without moviepy)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        image = Summary.Image(height=shape[0], width=shape[1], colorspace=3, encoded_image_string=gif)
        self._writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
