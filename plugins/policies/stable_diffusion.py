"""Policy ``stable-diffusion``: SD 1.x / 2.x through diffusers' ``StableDiffusionPipeline`` folders
(``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder and tokenizer), in latent space,
epsilon or v-prediction as the folder's scheduler config says, with a DDPM forward process for
the ``ddim-sde`` sampler.

``pretrained`` is a local folder or hub id (e.g. ``stable-diffusion-v1-5/stable-diffusion-v1-5``);
without it a tiny random configuration is built (CPU-sized, for tests and ``configs/sd-tiny.toml``).
"""

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_policies(register):
    # a string: diffusers and transformers are imported only when this policy is used
    register("stable-diffusion", "ddrl_plugins.policies.stable_diffusion_pipeline:build_stable_diffusion_policy", forward_process="ddpm")
