"""Policy ``unet2d``: a pixel-space diffusers ``UNet2DModel`` with a DDPM forward process.

The forward process takes its betas from diffusers' ``DDPMScheduler``; the loss is the usual
"simple" epsilon (or v) regression, the same one ``ddrl pretrain`` trains with. diffusers is
imported when a policy is built, not when the plugin registers.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.forward_process import DdpmProcess, ForwardProcessDelegation
from ddrl_framework.kit.module_weights import ModuleWeights
from ddrl_framework.types import DataBatch

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DModel


@hookimpl
def register_policies(register):
    register("unet2d", build_unet2d_policy, forward_process="ddpm")


class Unet2DPolicy(ForwardProcessDelegation, ModuleWeights):
    """Owns a ``UNet2DModel`` (the trainable denoiser) and its ``DDPMScheduler`` forward process."""

    def __init__(self, model: UNet2DModel, scheduler: DDPMScheduler, frozen: bool = False,
                 reference_names: tuple[str, ...] | None = None):
        self.model = model
        self.scheduler = scheduler
        self.forward_process = DdpmProcess(
            alphas_cumprod=scheduler.alphas_cumprod.float(),
            prediction_type=scheduler.config.prediction_type,
        )
        channels, size = model.config.in_channels, model.config.sample_size
        self.sample_shape = (channels, size, size)
        self.conditional = bool(model.config.num_class_embeds)
        self._reference: Unet2DPolicy | None = None
        self._reference_names = reference_names  # on the reference view: the policy's trainable names
        if frozen:
            model.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- conditions and the network -------------------------------------------------
    def encode_conditions(self, batch: DataBatch) -> Tensor | None:
        if not self.conditional:
            return None
        if batch.labels is None:
            raise ValueError("this unet2d policy is class-conditional but the batch has no labels")
        return batch.labels.to(self.device)

    def predict(self, x_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        t = t.to(x_t.device).expand(x_t.shape[0])
        return self.model(x_t, t, class_labels=cond).sample

    # --- pixels -----------------------------------------------------------------------
    def decode(self, latents: Tensor) -> Tensor:
        return ((latents.float() + 1) / 2).clamp(0, 1)

    def encode(self, pixels: Tensor) -> Tensor:
        return pixels * 2 - 1

    # --- parameters, reference, persistence ------------------------------------------
    def trainable_module(self) -> torch.nn.Module:
        """The module holding the trainable weights (what ``train.sharding = "fsdp2"`` shards)."""
        return self.model

    def _weights(self) -> torch.nn.Module:
        return self.model

    def reference(self) -> Unet2DPolicy:
        """A frozen copy of the weights as they were at the first call."""
        if self._reference is None:
            names = tuple(name for name, _ in self.named_trainable_parameters())
            self._reference = Unet2DPolicy(copy.deepcopy(self.model).eval(), self.scheduler, frozen=True,
                                           reference_names=names)
        return self._reference

    def save_pretrained(self, directory: str | Path) -> None:
        self.model.save_pretrained(Path(directory) / "unet")
        self.scheduler.save_pretrained(Path(directory) / "scheduler")

    def to(self, device: torch.device | str) -> Unet2DPolicy:
        self.model.to(device)
        return self


def _load_pretrained(source: str) -> tuple[UNet2DModel, DDPMScheduler]:
    """A folder written by ``save_pretrained`` (or ``ddrl pretrain``), or a hub id / folder with
    the UNet at its root (as ``google/ddpm-cifar10-32`` has)."""
    from diffusers import DDPMScheduler, UNet2DModel

    has_subfolder = Path(source, "unet").is_dir() or not Path(source).exists()
    try:
        model = UNet2DModel.from_pretrained(source, subfolder="unet" if has_subfolder else None,
                                            low_cpu_mem_usage=False)
        scheduler = DDPMScheduler.from_pretrained(
            source, subfolder="scheduler" if has_subfolder else None
        )
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load a UNet2DModel from '{source}': {error}") from None
    return model, scheduler


def build_unet2d_policy(
    *,
    pretrained: str | None = None,  # a folder (or hub id) to load; overrides the options below
    sample_size: int = 8,  # image height and width
    in_channels: int = 1,
    block_out_channels: tuple[int, ...] = (32, 64),
    layers_per_block: int = 1,
    norm_num_groups: int = 8,
    attention: bool = False,  # self-attention in the lowest-resolution block
    num_classes: int = 0,  # > 0: class-conditional on data labels
    num_train_timesteps: int = 1000,
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2",
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon",
    seed: int = 0,  # initial weights
) -> Unet2DPolicy:
    from diffusers import DDPMScheduler, UNet2DModel

    if pretrained is not None:
        return Unet2DPolicy(*_load_pretrained(pretrained))
    levels = len(block_out_channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNet2DModel(
            sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up),
            norm_num_groups=norm_num_groups, num_class_embeds=num_classes or None,
        )
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                              prediction_type=prediction_type)
    return Unet2DPolicy(model, scheduler)
