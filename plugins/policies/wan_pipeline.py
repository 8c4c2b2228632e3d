"""Policy ``wan``: Wan 2.1 text-to-video through diffusers' ``WanPipeline`` folders
(``WanTransformer3DModel`` + ``AutoencoderKLWan`` + UMT5 text encoder), on videos
``[B, C, T, H, W]`` end to end, with a flow-matching forward process (sample with ``flow-sde``).

``pretrained`` is a local folder or hub id (e.g. ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``); without it a
tiny random configuration is built (CPU-sized, for tests and ``configs/wan-tiny.toml``). The
flow-matching sigmas use ``shift`` (Wan's recommendation: 3.0 at 480p, 5.0 at 720p), or the
folder scheduler's ``flow_shift`` / ``shift``.

The implementation of the plugin in ``wan.py``, imported when a policy is built or its
options are checked (never when the plugin registers).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from torch import Tensor

from ddrl_framework.kit import tiny_text
from ddrl_framework.kit.diffusers_policy import (
    DiffusersPolicy,
    TrainingOptions,
    flow_matching_process,
)
from ddrl_framework.kit.experts import TimestepExperts
from ddrl_framework.kit.forward_process import per_sample
from ddrl_framework.kit.seeding import seeded
from ddrl_framework.kit.vae_codec import STANDARDIZED
from ddrl_framework.options import with_defaults


Variant = Literal["2.1", "2.2-a14b", "2.2-ti2v"]


class WanPolicy(DiffusersPolicy):
    pipeline_class = WanPipeline
    denoiser_name = "transformer"
    denoiser_input = "hidden_states"
    max_sequence_length = 512  # UMT5 tokens, as WanPipeline.__call__ (encode_prompt's own default is 226)
    vae_codec = STANDARDIZED
    guidance_scale_2: float | None = None  # Wan 2.2 A14B: the low-noise expert's scale (None: guidance_scale)

    def encode_prompts(self, prompts) -> dict[str, Tensor]:
        embeds, _ = self.pipeline.encode_prompt(
            list(prompts), do_classifier_free_guidance=False, device=self.device,
            max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds}

    def make_denoiser(self, pipeline: WanPipeline) -> torch.nn.Module:
        """Wan 2.2 A14B: the high-noise ``transformer`` for ``t >= boundary_ratio * T``, the
        low-noise ``transformer_2`` below; Wan 2.1 and 2.2 TI2V: the one transformer."""
        if not has_experts(pipeline):
            return pipeline.transformer
        boundary = pipeline.config.boundary_ratio * pipeline.scheduler.config.num_train_timesteps
        return TimestepExperts(pipeline.transformer, pipeline.transformer_2, boundary)

    def denoiser_components(self, denoiser: torch.nn.Module) -> dict[str, torch.nn.Module]:
        if isinstance(denoiser, TimestepExperts):
            return {"transformer": denoiser.high, "transformer_2": denoiser.low}
        return super().denoiser_components(denoiser)

    def guidance_scale_at(self, t: Tensor, scale: float, like: Tensor) -> float | Tensor:
        """``guidance_scale_2`` on the samples the low-noise expert runs, as ``WanPipeline.__call__``."""
        if self.guidance_scale_2 is None:
            return scale
        high = self.denoiser.runs_high(t * self.timestep_scale)
        return per_sample(torch.where(high, scale, self.guidance_scale_2), like)

    def pipeline_call_options(self) -> dict[str, Any]:
        return {**super().pipeline_call_options(), "guidance_scale_2": self.guidance_scale_2}

    def denoiser_inputs(self, x_t: Tensor, t: Tensor, embeds) -> dict[str, Any]:
        inputs = super().denoiser_inputs(x_t, t, embeds)
        if self.pipeline.config.expand_timesteps:  # Wan 2.2 TI2V: a timestep per latent token
            _, frames, height, width = self.sample_shape
            _, patch_h, patch_w = self.pipeline.transformer.config.patch_size
            tokens = frames * (height // patch_h) * (width // patch_w)
            inputs["timestep"] = inputs["timestep"][:, None].expand(-1, tokens)
        return inputs


def has_experts(pipeline: WanPipeline) -> bool:
    """Wan 2.2 A14B: a second transformer and the boundary between the two."""
    return pipeline.transformer_2 is not None and pipeline.config.boundary_ratio is not None


def tiny_pipeline(seed: int = 0, variant: Variant = "2.1") -> WanPipeline:
    """A random Wan-shaped pipeline: 5 frames of 16x16 pixels, 16 x 2 x 2 x 2 latents. "2.2-a14b": two
    experts switched at boundary_ratio 0.875 (A14B's text-to-video value); "2.2-ti2v": one
    transformer taking a timestep per token (TI2V-5B's ``expand_timesteps``)."""
    def transformer():
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=16,
            out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
            rope_max_seq_len=32)

    def vae():
        return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                temperal_downsample=[False, True, True])

    experts = variant == "2.2-a14b"
    return WanPipeline(
        transformer=seeded(seed, transformer), vae=seeded(seed + 1, vae),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=tiny_text.t5_encoder(32, seed + 2, umt5=True), tokenizer=tiny_text.t5_tokenizer(),
        transformer_2=seeded(seed + 3, transformer) if experts else None,
        boundary_ratio=0.875 if experts else None, expand_timesteps=variant == "2.2-ti2v")


def _flow_scheduler(pipeline: WanPipeline, shift: float | None) -> FlowMatchEulerDiscreteScheduler:
    config = pipeline.scheduler.config
    shift = shift or config.get("flow_shift") or config.get("shift") or 3.0
    return FlowMatchEulerDiscreteScheduler(shift=shift, num_train_timesteps=config.get("num_train_timesteps", 1000))


def build_wan_policy(
    *,
    pretrained: str | None = None,  # a pipeline folder or hub id; None: the tiny random configuration
    variant: Variant = "2.1",  # the tiny configuration's (a folder says its own)
    frames: int = 5,  # video length in frames: 1 + 4 k (81 for Wan2.1's 5 s clips)
    height: int = 16,  # pixels (480 for Wan2.1-T2V-1.3B)
    width: int = 16,  # pixels (832 for Wan2.1-T2V-1.3B)
    shift: float | None = None,  # flow-matching sigma shift; None: the folder's, else 3.0
    max_sequence_length: int = 512,  # UMT5 tokens per prompt (Wan's cross-attention has no mask: as __call__)
    guidance_scale_2: float | None = None,  # Wan 2.2 A14B: the low-noise expert's guidance; None: guidance_scale
    seed: int = 0,  # weights of the tiny configuration
    **training: object,  # TrainingOptions: lora_rank, guidance_scale, mixed_precision, ...
) -> WanPolicy:
    options = TrainingOptions(**training)
    pipeline = WanPolicy.load_or_tiny(pretrained, lambda: tiny_pipeline(seed, variant), options)
    _check_second_guidance(pipeline, guidance_scale_2, options)
    if (frames - 1) % pipeline.vae_scale_factor_temporal:
        raise ValueError(f"frames = {frames}: must be 1 + {pipeline.vae_scale_factor_temporal} k")
    spatial = pipeline.vae_scale_factor_spatial
    latent_frames = (frames - 1) // pipeline.vae_scale_factor_temporal + 1
    shape = (pipeline.transformer.config.in_channels, latent_frames, height // spatial, width // spatial)
    process = flow_matching_process(_flow_scheduler(pipeline, shift))
    return WanPolicy(pipeline, process, shape, (3, frames, height, width), options,
                     max_sequence_length=max_sequence_length, guidance_scale_2=guidance_scale_2)


def _check_second_guidance(pipeline: WanPipeline, guidance_scale_2: float | None, options: TrainingOptions) -> None:
    """``guidance_scale_2`` where the pipeline would use it: two experts, and guidance on at all
    (``__call__`` guides only when ``guidance_scale`` > 1, whatever the second scale)."""
    if guidance_scale_2 is None:
        return
    if not has_experts(pipeline):
        raise ValueError(f"guidance_scale_2 = {guidance_scale_2}: only Wan 2.2 A14B's two experts take a second "
                         "guidance scale, and this pipeline has one transformer (no boundary_ratio); remove it")
    if not options.guided:
        raise ValueError(f"guidance_scale_2 = {guidance_scale_2} with guidance_scale = {options.guidance_scale}: "
                         "WanPipeline guides only when guidance_scale > 1, so the second scale would be ignored; "
                         "set guidance_scale above 1, or remove guidance_scale_2")


build_wan_policy.option_class = TrainingOptions
build_wan22_policy = with_defaults(build_wan_policy, variant="2.2-a14b")  # policy "wan2.2"
