"""Policy ``sd3``: Stable Diffusion 3 / 3.5 through diffusers' ``StableDiffusion3Pipeline`` folders
(``SD3Transformer2DModel`` + ``AutoencoderKL`` + two CLIP text encoders and an optional T5), a
flow-matching forward process with the scheduler's shifted sigmas, and the flow-matching loss.
Sample it with the ``flow-sde`` sampler.

``pretrained`` is a local folder or hub id (e.g. ``stabilityai/stable-diffusion-3.5-medium``);
without it a tiny random configuration is built (CPU-sized, for tests and ``configs/sd3-tiny.toml``).

The implementation of the plugin in ``sd3.py``, imported when a policy is built or its
options are checked (never when the plugin registers).
"""

from __future__ import annotations

from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from torch import Tensor

from ddrl_framework.kit import tiny_text, tiny_vae
from ddrl_framework.kit.diffusers_policy import (
    DiffusersPolicy,
    TrainingOptions,
    flow_matching_process,
    image_shapes,
)
from ddrl_framework.kit.seeding import seeded


class Sd3Policy(DiffusersPolicy):
    pipeline_class = StableDiffusion3Pipeline
    denoiser_name = "transformer"
    denoiser_input = "hidden_states"
    max_sequence_length = 256  # T5 tokens, as the pipeline's default

    def encode_prompts(self, prompts) -> dict[str, Tensor]:
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompt=list(prompts), prompt_2=None, prompt_3=None, device=self.device,
            do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}


def tiny_pipeline(seed: int = 0) -> StableDiffusion3Pipeline:
    """A random SD3-shaped pipeline: 32x32 pixels, 4x16x16 latents, T5 included."""
    def transformer():
        return SD3Transformer2DModel(
            sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
            attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
            caption_projection_dim=16, pooled_projection_dim=32, pos_embed_max_size=16)

    return StableDiffusion3Pipeline(
        transformer=seeded(seed, transformer),
        vae=tiny_vae.autoencoder_kl(seed + 1, scaling_factor=1.5035, shift_factor=0.0609),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=tiny_text.clip_text_model(16, seed + 2, with_projection=True),
        tokenizer=tiny_text.clip_tokenizer(),
        text_encoder_2=tiny_text.clip_text_model(16, seed + 3, with_projection=True),
        tokenizer_2=tiny_text.clip_tokenizer(),
        text_encoder_3=tiny_text.t5_encoder(32, seed + 4), tokenizer_3=tiny_text.t5_tokenizer())


def build_sd3_policy(
    *,
    pretrained: str | None = None,  # a pipeline folder or hub id; None: the tiny random configuration
    resolution: int | None = None,  # pixels per side; None: the transformer's sample size x the VAE factor
    shift: float | None = None,  # override the scheduler's sigma shift
    max_sequence_length: int = 256,  # T5 tokens per prompt
    seed: int = 0,  # weights of the tiny configuration
    **training: object,  # TrainingOptions: lora_rank, guidance_scale, mixed_precision, ...
) -> Sd3Policy:
    options = TrainingOptions(**training)
    pipeline = Sd3Policy.load_or_tiny(pretrained, lambda: tiny_pipeline(seed), options)
    if shift is not None:
        pipeline.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipeline.scheduler.config, shift=shift)
    shape, pixels = image_shapes(pipeline.vae, resolution or pipeline.default_sample_size * pipeline.vae_scale_factor)
    return Sd3Policy(pipeline, flow_matching_process(pipeline.scheduler), shape, pixels, options,
                     max_sequence_length=max_sequence_length)


build_sd3_policy.option_class = TrainingOptions
