"""Policy ``qwen-image``: Qwen-Image through diffusers' ``QwenImagePipeline`` folders
(``QwenImageTransformer2DModel`` + ``AutoencoderKLQwenImage`` + a Qwen2.5-VL text encoder), on the
pipeline's own sampling path: packed 2x2 latent tokens, timesteps on [0, 1], prompts of their own
length with a text mask, true classifier-free guidance rescaled to the conditional output's norm,
and the pipeline's schedule (``linspace(1, 1/N, N)`` sigmas shifted by the resolution-dependent
``mu``). Sample it with the ``flow-sde`` sampler.

``pretrained`` is a local folder or hub id (e.g. ``Qwen/Qwen-Image``); without it a tiny random
configuration is built (CPU-sized, for tests and ``configs/qwen-image-tiny.toml``).
"""

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_policies(register):
    # a string: diffusers and transformers are imported only when this policy is used
    register("qwen-image", "ddrl_plugins.policies.qwen_image_pipeline:build_qwen_image_policy",
             forward_process="flow-matching")
