"""Policy ``flux``: FLUX.1 [dev] / [schnell] through diffusers' ``FluxPipeline`` (see ``flux.py``).

The network takes the latents as packed 2x2 tokens with image and text position ids, its timestep
as sigma (``timestep_scale`` 1/1000) and, for guidance-distilled [dev], a ``guidance`` input
(``embedded_guidance``, the pipeline's ``guidance_scale``). The framework's ``guidance_scale`` is
true classifier-free guidance with a negative prompt (the pipeline's ``true_cfg_scale``); FLUX.1 is
usually run without it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from torch import Tensor

from ddrl_framework.kit import lora_targets, tiny_text, tiny_vae
from ddrl_framework.kit.diffusers_policy import (
    DiffusersPolicy,
    TrainingOptions,
    dynamic_shift,
    flow_matching_process,
    image_shapes,
)
from ddrl_framework.kit.latent_tokens import PackedLatents, image_position_ids, pack_2x2, text_position_ids
from ddrl_framework.kit.seeding import seeded


class FluxPolicy(PackedLatents, DiffusersPolicy):
    pipeline_class = FluxPipeline
    timestep_scale = 1 / 1000  # FluxPipeline passes timestep / 1000
    max_sequence_length = 512  # T5 tokens, as the pipeline's default
    lora_targets = lora_targets.FLUX
    embedded_guidance = 3.5  # [dev]'s distilled guidance input; unused where the network has none

    def encode_prompts(self, prompts) -> dict[str, Tensor]:
        embeds, pooled, _ = self.pipeline.encode_prompt(
            prompt=list(prompts), prompt_2=None, device=self.device, max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def denoiser_inputs(self, x_t: Tensor, t: Tensor, embeds) -> dict[str, Any]:
        _, height, width = self.sample_shape
        inputs = {"hidden_states": pack_2x2(x_t), "timestep": t * self.timestep_scale,
                  "img_ids": image_position_ids(height // 2, width // 2, like=x_t),
                  "txt_ids": text_position_ids(embeds["encoder_hidden_states"].shape[1], like=x_t), **embeds}
        if self.pipeline.transformer.config.guidance_embeds:
            inputs["guidance"] = torch.full(t.shape, self.embedded_guidance, device=t.device)
        return inputs

    def pipeline_call_options(self) -> dict[str, Any]:
        return {**super().pipeline_call_options(), "guidance_scale": self.embedded_guidance,
                **self.true_cfg_call_options()}


def tiny_pipeline(seed: int = 0, variant: Literal["dev", "schnell"] = "dev") -> FluxPipeline:
    """A random FLUX.1-shaped pipeline: 32x32 pixels, 4x16x16 latents (64 packed tokens of 16),
    with [dev]'s guidance input and dynamically shifted scheduler, or [schnell]'s plain one."""
    def transformer():
        return FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16,
            guidance_embeds=variant == "dev", axes_dims_rope=(4, 4, 8))

    if variant == "dev":  # FLUX.1-dev's scheduler config
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                    max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    else:  # FLUX.1-schnell's
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    return FluxPipeline(
        transformer=seeded(seed, transformer),
        vae=tiny_vae.autoencoder_kl(seed + 1, scaling_factor=0.3611, shift_factor=0.1159),
        scheduler=scheduler,
        text_encoder=tiny_text.clip_text_model(16, seed + 2), tokenizer=tiny_text.clip_tokenizer(),
        text_encoder_2=tiny_text.t5_encoder(32, seed + 3), tokenizer_2=tiny_text.t5_tokenizer())


def build_flux_policy(
    *,
    pretrained: str | None = None,  # a pipeline folder or hub id; None: the tiny random configuration
    variant: Literal["dev", "schnell"] = "dev",  # the tiny configuration's (a folder says its own)
    resolution: int | None = None,  # pixels per side; None: 1024 for a folder, 32 for the tiny one
    embedded_guidance: float = 3.5,  # [dev]'s guidance input (the pipeline's guidance_scale)
    max_sequence_length: int = 512,  # T5 tokens per prompt (schnell: at most 256)
    seed: int = 0,  # weights of the tiny configuration
    **training: object,  # TrainingOptions: lora_rank, guidance_scale (true CFG), mixed_precision, ...
) -> FluxPolicy:
    options = TrainingOptions(**training)
    pipeline = FluxPolicy.load_or_tiny(pretrained, lambda: tiny_pipeline(seed, variant), options)
    default = 32 if pretrained is None else pipeline.default_sample_size * pipeline.vae_scale_factor
    shape, pixels = image_shapes(pipeline.vae, resolution or default, multiple=2)  # 2x2 packing
    image_tokens = (shape[1] // 2) * (shape[2] // 2)
    config = pipeline.scheduler.config
    mu = dynamic_shift(config, image_tokens) if config.get("use_dynamic_shifting") else None
    process = flow_matching_process(pipeline.scheduler, mu=mu, pipeline_sigmas=True)
    return FluxPolicy(pipeline, process, shape, pixels, options, embedded_guidance=embedded_guidance,
                      max_sequence_length=max_sequence_length)


build_flux_policy.option_class = TrainingOptions
