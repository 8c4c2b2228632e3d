"""Policy ``wan``: Wan 2.1 text-to-video through diffusers' ``WanPipeline`` folders
(``WanTransformer3DModel`` + ``AutoencoderKLWan`` + UMT5 text encoder), on videos
``[B, C, T, H, W]`` end to end, with a flow-matching forward process (sample with ``flow-sde``).

``pretrained`` is a local folder or hub id (e.g. ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``); without it a
tiny random configuration is built (CPU-sized, for tests and ``configs/wan-tiny.toml``). The
flow-matching sigmas use ``shift`` (Wan's recommendation: 3.0 at 480p, 5.0 at 720p), or the
folder scheduler's ``flow_shift`` / ``shift``.
"""

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_policies(register):
    # a string: diffusers and transformers are imported only when this policy is used
    register("wan", "ddrl_plugins.policies.wan_pipeline:build_wan_policy", forward_process="flow-matching")
