"""Policy ``flux``: FLUX.1 [dev] and [schnell] through diffusers' ``FluxPipeline`` folders
(``FluxTransformer2DModel`` + ``AutoencoderKL`` + CLIP and T5 text encoders), on the pipeline's own
sampling path: packed 2x2 latent tokens with position ids, timesteps on [0, 1], the distilled
guidance input ([dev]), and the pipeline's schedule (``linspace(1, 1/N, N)`` sigmas shifted by the
resolution-dependent ``mu``). Sample it with the ``flow-sde`` sampler.

``pretrained`` is a local folder or hub id (e.g. ``black-forest-labs/FLUX.1-dev``); without it a
tiny random configuration is built (CPU-sized, for tests and ``configs/flux-tiny.toml``).
"""

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_policies(register):
    # a string: diffusers and transformers are imported only when this policy is used
    register("flux", "ddrl_plugins.policies.flux_pipeline:build_flux_policy", forward_process="flow-matching")
