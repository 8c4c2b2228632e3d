"""Policy ``sd3``: Stable Diffusion 3 / 3.5 through diffusers' ``StableDiffusion3Pipeline`` folders
(``SD3Transformer2DModel`` + ``AutoencoderKL`` + two CLIP text encoders and an optional T5), a
flow-matching forward process with the scheduler's shifted sigmas, and the flow-matching loss.
Sample it with the ``flow-sde`` sampler.

``pretrained`` is a local folder or hub id (e.g. ``stabilityai/stable-diffusion-3.5-medium``);
without it a tiny random configuration is built (CPU-sized, for tests and ``configs/sd3-tiny.toml``).
"""

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_policies(register):
    # a string: diffusers and transformers are imported only when this policy is used
    register("sd3", "ddrl_plugins.policies.sd3_pipeline:build_sd3_policy", forward_process="flow-matching")
