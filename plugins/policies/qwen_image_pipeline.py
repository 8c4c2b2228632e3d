"""Policy ``qwen-image``: Qwen-Image through diffusers' ``QwenImagePipeline`` (see ``qwen_image.py``).

The network takes packed 2x2 tokens, its timestep as sigma (``timestep_scale`` 1/1000), the
prompt embeddings with their mask (prompts keep their own length: ``text_mask_key``) and the
latent grid (``img_shapes``). Guidance is the pipeline's ``true_cfg_scale`` with a negative
prompt, rescaled per token to the conditional prediction's norm. The VAE is a video VAE run on one
frame; latents are standardized per channel.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)
from torch import Tensor

from ddrl_framework.kit import lora_targets, tiny_text
from ddrl_framework.kit.diffusers_policy import (
    DiffusersPolicy,
    TrainingOptions,
    dynamic_shift,
    flow_matching_process,
)
from ddrl_framework.kit.latent_tokens import PackedLatents, pack_2x2, unpack_2x2
from ddrl_framework.kit.seeding import seeded
from ddrl_framework.kit.vae_codec import STANDARDIZED


class QwenImagePolicy(PackedLatents, DiffusersPolicy):
    pipeline_class = QwenImagePipeline
    timestep_scale = 1 / 1000  # QwenImagePipeline passes timestep / 1000
    max_sequence_length = 512  # text tokens, as the pipeline's default
    text_mask_key = "encoder_hidden_states_mask"
    lora_targets = lora_targets.QWEN_IMAGE

    def encode_prompts(self, prompts) -> dict[str, Tensor]:
        embeds, mask = self.pipeline.encode_prompt(list(prompts), device=self.device,
                                                   max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds} if mask is None else {"encoder_hidden_states": embeds,
                                                                       self.text_mask_key: mask}

    def denoiser_inputs(self, x_t: Tensor, t: Tensor, embeds) -> dict[str, Any]:
        _, height, width = self.sample_shape
        return {"hidden_states": pack_2x2(x_t), "timestep": t * self.timestep_scale,
                "img_shapes": [[(1, height // 2, width // 2)]] * x_t.shape[0], **embeds}

    def combine_guidance(self, uncond: Tensor, conditional: Tensor, scale: float) -> Tensor:
        """The pipeline's: the guided velocity rescaled, token by token, to the conditional one's norm."""
        cond_tokens = pack_2x2(conditional)
        guided = pack_2x2(super().combine_guidance(uncond, conditional, scale))
        guided = guided * (cond_tokens.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))
        return unpack_2x2(guided, *conditional.shape[-2:])

    def vae_encode(self, pixels: Tensor) -> Tensor:  # a video VAE, one frame
        return STANDARDIZED.encode(self.pipeline.vae, pixels[:, :, None])[:, :, 0]

    def vae_decode(self, latents: Tensor) -> Tensor:
        return STANDARDIZED.decode(self.pipeline.vae, latents[:, :, None])[:, :, 0]

    def pipeline_call_options(self) -> dict[str, Any]:
        options = {**super().pipeline_call_options(), **self.true_cfg_call_options()}
        del options["guidance_scale"]  # Qwen-Image is not guidance-distilled
        return options


def tiny_pipeline(seed: int = 0) -> QwenImagePipeline:
    """A random Qwen-Image-shaped pipeline: 32x32 pixels, 4x16x16 latents (64 packed tokens of 16),
    Qwen-Image's scheduler config (dynamic shift, terminal sigma 0.02)."""
    def transformer():
        return QwenImageTransformer2DModel(
            patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 6, 6))

    def vae():
        return AutoencoderKLQwenImage(base_dim=4, z_dim=4, dim_mult=[1, 2], num_res_blocks=1,
                                      temperal_downsample=[False], latents_mean=[0.1, -0.2, 0.3, 0.0],
                                      latents_std=[1.5, 2.0, 1.0, 0.5])

    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
        max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")
    return QwenImagePipeline(
        transformer=seeded(seed, transformer), vae=seeded(seed + 1, vae), scheduler=scheduler,
        text_encoder=tiny_text.qwen_vl_model(32, seed + 2), tokenizer=tiny_text.qwen_tokenizer())


def build_qwen_image_policy(
    *,
    pretrained: str | None = None,  # a pipeline folder or hub id; None: the tiny random configuration
    resolution: int | None = None,  # pixels per side; None: 1024 for a folder, 32 for the tiny one
    max_sequence_length: int = 512,  # text tokens per prompt (at most 1024)
    seed: int = 0,  # weights of the tiny configuration
    **training: object,  # TrainingOptions: lora_rank, guidance_scale (true CFG), mixed_precision, ...
) -> QwenImagePolicy:
    options = TrainingOptions(**training)
    pipeline = QwenImagePolicy.load_or_tiny(pretrained, lambda: tiny_pipeline(seed), options)
    factor = pipeline.vae_scale_factor
    side = (resolution or (32 if pretrained is None else 1024)) // (factor * 2) * 2  # 2x2 packing
    shape, pixels = (pipeline.vae.config.z_dim, side, side), (3, side * factor, side * factor)
    mu = dynamic_shift(pipeline.scheduler.config, (side // 2) ** 2)
    process = flow_matching_process(pipeline.scheduler, mu=mu, pipeline_sigmas=True)
    return QwenImagePolicy(pipeline, process, shape, pixels, options, max_sequence_length=max_sequence_length)


build_qwen_image_policy.option_class = TrainingOptions
