"""Policy ``flux2-klein``: FLUX.2 [klein] text-to-image through diffusers' ``Flux2KleinPipeline``
folders (``Flux2Transformer2DModel`` + ``AutoencoderKLFlux2`` + a Qwen3 text encoder), on the
pipeline's own sampling path: the VAE's latents patchified 2x2 and standardized by its batch-norm
statistics, packed into tokens with 4-axis position ids, timesteps on [0, 1], Qwen3 hidden states
of three layers as text, classifier-free guidance against the empty prompt (the base models; the
step-distilled ones take none), and the pipeline's schedule (``linspace(1, 1/N, N)`` sigmas shifted
by a ``mu`` that depends on the token count and the step count). Sample it with ``flow-sde``.

``pretrained`` is a local folder or hub id (e.g. ``black-forest-labs/FLUX.2-klein-base-4B``);
without it a tiny random configuration is built (CPU-sized, for tests and
``configs/flux2-klein-tiny.toml``).
"""

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_policies(register):
    # a string: diffusers and transformers are imported only when this policy is used
    register("flux2-klein", "ddrl_plugins.policies.flux2_klein_pipeline:build_flux2_klein_policy",
             forward_process="flow-matching")
