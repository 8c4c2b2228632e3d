"""Logger ``wandb``: Weights & Biases, offline by default (no network: the run is written under
``<output_dir>/wandb`` and ``wandb sync`` uploads it later). Scalars ``train/<key>`` and
``eval/<key>``, and at every evaluation the sample grid and, for videos, an animated GIF.

Needs the ``wandb`` package (``pip install -e ".[wandb]"``), imported when the run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.io import atomic_write_bytes
from ddrl_plugins.loggers.tensorboard import scalars

INSTALL = 'pip install "ddrl-framework[wandb]" (or pip install -e ".[wandb]" in a checkout)'


@hookimpl
def register_loggers(register):
    register("wandb", WandbLogger)


@attrs.define(kw_only=True)
class WandbLogger:
    project: str = "ddrl"
    entity: str | None = None
    name: str | None = None  # default: the run folder's name
    mode: Literal["offline", "online"] = "offline"  # offline: nothing leaves the machine
    max_samples: int = attrs.field(default=16, validator=attrs.validators.ge(1))  # per evaluation
    requires = {"wandb": INSTALL}
    _run: Any = attrs.field(default=None, init=False, repr=False)
    _media: Path | None = attrs.field(default=None, init=False, repr=False)

    def start(self, output_dir: Path, config: Mapping[str, Any]) -> str:
        import wandb

        output_dir = Path(output_dir)
        self._media = output_dir / "wandb-media"
        self._run = wandb.init(project=self.project, entity=self.entity, name=self.name or output_dir.name,
                               dir=str(output_dir), mode=self.mode, config=dict(config), reinit="finish_previous")
        where = Path(self._run.dir).parent
        if self.mode == "offline":
            return f"W&B offline run in {where}; upload it with: wandb sync {where}"
        return f"W&B run: {self._run.url}"

    def log_metrics(self, values: Mapping[str, float], step: int, kind: str) -> None:
        self._run.log({f"{kind}/{k}": v for k, v in scalars(values).items()}, step=step)

    def log_samples(self, name: str, pixels: Tensor, step: int) -> None:
        import wandb

        from ddrl_framework.evaluation.plots import grid_image, video_gif

        pixels = pixels[: self.max_samples].detach().float().cpu().clamp(0, 1)
        media = {name: wandb.Image(np.asarray(grid_image(pixels).convert("RGB")))}
        if pixels.ndim == 5:  # a GIF file: wandb.Video of an array would need moviepy
            gif = self._media / f"{name.replace('/', '_')}-{step:06d}.gif"
            gif.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(gif, video_gif(pixels))
            media[f"{name}_video"] = wandb.Video(str(gif), format="gif")
        self._run.log(media, step=step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
