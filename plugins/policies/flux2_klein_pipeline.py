"""Policy ``flux2-klein``: FLUX.2 [klein] through diffusers' ``Flux2KleinPipeline`` (see ``flux2_klein.py``).

A sample is the pipeline's own latent grid, ``[4C, H/2, W/2]``: the VAE's latents patchified 2x2
and standardized by the VAE's batch-norm statistics (``vae_codec.PATCHED_BATCH_NORM``), where
``prepare_latents`` draws its noise. The network takes that grid as row-major tokens with 4-axis
position ids, its timestep as sigma (``timestep_scale`` 1/1000), Qwen3's stacked hidden states and
no guidance input. ``__call__(output_type="latent")`` returns the VAE's latents (de-normalized,
unpatchified): ``from_pipeline_output`` maps them back.
"""

from __future__ import annotations

import functools
from typing import Any

from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu
from torch import Tensor

from ddrl_framework.kit import lora_targets, tiny_text, tiny_vae
from ddrl_framework.kit.diffusers_policy import (
    DiffusersPolicy,
    TrainingOptions,
    flow_matching_process,
    image_shapes,
)
from ddrl_framework.kit.latent_tokens import (
    grid_to_tokens,
    image_position_ids,
    text_position_ids,
    tokens_to_grid,
)
from ddrl_framework.kit.seeding import seeded
from ddrl_framework.kit.vae_codec import PATCHED_BATCH_NORM

TINY_TEXT_LAYERS = (1, 2, 3)  # the tiny Qwen3's three layers, where a folder's has (9, 18, 27) of 36


class Flux2KleinPolicy(DiffusersPolicy):
    pipeline_class = Flux2KleinPipeline
    timestep_scale = 1 / 1000  # the pipeline passes timestep / 1000
    max_sequence_length = 512  # Qwen3 tokens, as the pipeline's default
    text_encoder_out_layers: tuple[int, ...] = (9, 18, 27)  # the Qwen3 hidden states stacked, as the pipeline's
    lora_targets = lora_targets.FLUX2
    vae_codec = PATCHED_BATCH_NORM

    def encode_prompts(self, prompts) -> dict[str, Tensor]:
        embeds, _ = self.pipeline.encode_prompt(
            list(prompts), device=self.device, max_sequence_length=self.max_sequence_length,
            text_encoder_out_layers=self.text_encoder_out_layers)
        return {"encoder_hidden_states": embeds}

    def denoiser_inputs(self, x_t: Tensor, t: Tensor, embeds) -> dict[str, Any]:
        _, rows, columns = self.sample_shape
        positions = t.float()  # float32 ids: bf16 would round text positions above 256
        return {"hidden_states": grid_to_tokens(x_t), "timestep": t * self.timestep_scale,
                "img_ids": image_position_ids(rows, columns, like=positions, axes=4),
                "txt_ids": text_position_ids(embeds["encoder_hidden_states"].shape[1], like=positions, axes=4),
                **embeds}  # no guidance input: the pipeline passes guidance=None

    def read_output(self, output: Tensor, x_t: Tensor) -> Tensor:
        return tokens_to_grid(output, *x_t.shape[-2:])

    def from_pipeline_latents(self, latents: Tensor) -> Tensor:
        """The loop's packed tokens (``__call__`` takes the grid, ``to_pipeline_latents``: as it is)."""
        return tokens_to_grid(latents, *self.sample_shape[-2:])

    def from_pipeline_output(self, latents: Tensor) -> Tensor:
        """``output_type="latent"`` returns the VAE's latents: patchified and standardized again."""
        return self.vae_codec.normalize(self.pipeline.vae, latents)

    def pipeline_call_options(self) -> dict[str, Any]:
        # guidance_scale: the pipeline's classifier-free guidance (above 1, base models), against ""
        return {**super().pipeline_call_options(), "text_encoder_out_layers": self.text_encoder_out_layers}


def tiny_pipeline(seed: int = 0) -> Flux2KleinPipeline:
    """A random FLUX.2 [klein]-shaped pipeline (a base model: guided, not step-distilled): 32x32
    pixels, 4x16x16 VAE latents, 16x8x8 patchified (64 tokens of 16), a three-layer Qwen3."""
    def transformer():
        return Flux2Transformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=3 * 16, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False)

    # FLUX.2's scheduler config: dynamic shifting, the pipeline computing mu itself
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096, time_shift_type="exponential")
    return Flux2KleinPipeline(
        transformer=seeded(seed, transformer), vae=tiny_vae.autoencoder_kl_flux2(seed + 1), scheduler=scheduler,
        text_encoder=tiny_text.qwen3_model(16, seed + 2, layers=len(TINY_TEXT_LAYERS)),
        tokenizer=tiny_text.qwen_tokenizer(tiny_text.QWEN3_CHAT_TEMPLATE), is_distilled=False)


def build_flux2_klein_policy(
    *,
    pretrained: str | None = None,  # a pipeline folder or hub id; None: the tiny random configuration
    resolution: int | None = None,  # pixels per side; None: 1024 for a folder, 32 for the tiny one
    max_sequence_length: int = 512,  # Qwen3 tokens per prompt
    text_encoder_out_layers: tuple[int, ...] | None = None,  # None: (9, 18, 27) for a folder, (1, 2, 3) tiny
    training_mu_steps: int = 50,  # the step count whose mu shifts the training sigmas (see below)
    seed: int = 0,  # weights of the tiny configuration
    **training: object,  # TrainingOptions: lora_rank, guidance_scale (CFG, base models only), mixed_precision, ...
) -> Flux2KleinPolicy:
    """The pipeline's mu depends on the step count N (``compute_empirical_mu(tokens, N)``): rollouts
    use the mu of their own step count (``FlowMatchingProcess.step_mu``). The training sigmas (the
    pre-training loss's timestep distribution) need one: the mu at ``training_mu_steps``, by default
    the pipeline's default ``num_inference_steps``; set it to the sampler's steps to train on the
    rollouts' shift."""
    options = TrainingOptions(**training)
    pipeline = Flux2KleinPolicy.load_or_tiny(pretrained, lambda: tiny_pipeline(seed), options)
    _check_guidance(pipeline, options)
    default = 32 if pretrained is None else pipeline.default_sample_size * pipeline.vae_scale_factor
    (channels, side, _), pixels = image_shapes(pipeline.vae, resolution or default, multiple=2)
    shape = (channels * 4, side // 2, side // 2)  # patchified 2x2
    step_mu = functools.partial(compute_empirical_mu, shape[1] * shape[2])
    process = flow_matching_process(pipeline.scheduler, mu=step_mu(training_mu_steps), pipeline_sigmas=True,
                                    step_mu=step_mu)
    layers = text_encoder_out_layers or _text_layers(pipeline.text_encoder)
    return Flux2KleinPolicy(pipeline, process, shape, pixels, options, max_sequence_length=max_sequence_length,
                            text_encoder_out_layers=tuple(layers))


def _text_layers(text_encoder) -> tuple[int, ...]:
    """The Qwen3 hidden states the pipeline stacks: (9, 18, 27) of a real folder's 36 layers, all
    three of the tiny one's (also when it was saved and loaded back)."""
    deep = text_encoder.config.num_hidden_layers > max(Flux2KleinPolicy.text_encoder_out_layers)
    return Flux2KleinPolicy.text_encoder_out_layers if deep else TINY_TEXT_LAYERS


def _check_guidance(pipeline: Flux2KleinPipeline, options: TrainingOptions) -> None:
    """The pipeline guides against the empty prompt, and a step-distilled folder not at all: an
    option it would ignore is an error, not a silent difference."""
    if options.negative_prompt:
        raise ValueError(f"negative_prompt = {options.negative_prompt!r}: Flux2KleinPipeline guides against the "
                         "empty prompt only; leave negative_prompt empty")
    if options.guided and pipeline.config.is_distilled:
        raise ValueError(f"guidance_scale = {options.guidance_scale}: this folder is step-distilled "
                         "(is_distilled = true), and its pipeline ignores guidance; set guidance_scale = 1")


build_flux2_klein_policy.option_class = TrainingOptions
