"""Policy ``stable-diffusion``: SD 1.x / 2.x through diffusers' ``StableDiffusionPipeline`` folders
(``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder and tokenizer), in latent space,
epsilon or v-prediction as the folder's scheduler config says, with a DDPM forward process for
the ``ddim-sde`` sampler.

``pretrained`` is a local folder or hub id (e.g. ``stable-diffusion-v1-5/stable-diffusion-v1-5``);
without it a tiny random configuration is built (CPU-sized, for tests and ``configs/sd-tiny.toml``).

The implementation of the plugin in ``stable_diffusion.py``, imported when a policy is built or its
options are checked (never when the plugin registers).
"""

from __future__ import annotations

import functools
from typing import Literal

from diffusers import (
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from torch import Tensor

from ddrl_framework.kit import tiny_text, tiny_vae
from ddrl_framework.kit.diffusers_policy import (
    DiffusersPolicy,
    TrainingOptions,
    ddpm_process,
    image_shapes,
)
from ddrl_framework.kit.seeding import seeded


class StableDiffusionPolicy(DiffusersPolicy):
    pipeline_class = StableDiffusionPipeline
    denoiser_name = "unet"
    denoiser_input = "sample"

    def encode_prompts(self, prompts) -> dict[str, Tensor]:
        embeds, _ = self.pipeline.encode_prompt(list(prompts), self.device, 1, False)
        return {"encoder_hidden_states": embeds}


def tiny_pipeline(seed: int = 0, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    """A random SD-shaped pipeline: 32x32 pixels, 4x16x16 latents, about 0.1M parameters."""
    def unet():
        return UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32),
            layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
            attention_head_dim=4, norm_num_groups=8)

    return StableDiffusionPipeline(
        unet=seeded(seed, unet), vae=tiny_vae.autoencoder_kl(seed + 1, quant_conv=True),
        text_encoder=tiny_text.clip_text_model(16, seed + 2), tokenizer=tiny_text.clip_tokenizer(),
        scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                prediction_type=prediction_type, clip_sample=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def build_stable_diffusion_policy(
    *,
    pretrained: str | None = None,  # a pipeline folder or hub id; None: the tiny random configuration
    resolution: int | None = None,  # pixels per side; None: the UNet's sample size x the VAE factor
    prediction_type: Literal["epsilon", "v_prediction"] | None = None,  # None: the folder's config
    seed: int = 0,  # weights of the tiny configuration
    **training: object,  # TrainingOptions: lora_rank, guidance_scale, mixed_precision, ...
) -> StableDiffusionPolicy:
    options = TrainingOptions(**training)
    tiny = functools.partial(tiny_pipeline, seed, prediction_type or "epsilon")
    pipeline = StableDiffusionPolicy.load_or_tiny(pretrained, tiny, options, safety_checker=None,
                                                  requires_safety_checker=False)
    # clip_sample: StableDiffusionPipeline samples latents unclamped, whatever an old config says
    process = ddpm_process(pipeline.scheduler, prediction_type=prediction_type, clip_sample=False)
    shape, pixels = image_shapes(pipeline.vae, resolution or pipeline.unet.config.sample_size * pipeline.vae_scale_factor)
    return StableDiffusionPolicy(pipeline, process, shape, pixels, options)


build_stable_diffusion_policy.option_class = TrainingOptions
