"""Policy ``wan2.2``: Wan 2.2 text-to-video through diffusers' ``WanPipeline`` folders, the ``wan``
policy with Wan 2.2's tiny configurations: A14B's two experts (a high-noise transformer above
``boundary_ratio * T``, a low-noise one below, trained together as one ``kit.experts.TimestepExperts``)
by default, or TI2V-5B's timestep per token (``variant = "2.2-ti2v"``).

``pretrained`` is a local folder or hub id (e.g. ``Wan-AI/Wan2.2-T2V-A14B-Diffusers``, whose
``transformer_2`` and ``boundary_ratio`` are read from the folder); every ``wan`` option applies.
"""

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_policies(register):
    # a string: diffusers and transformers are imported only when this policy is used
    register("wan2.2", "ddrl_plugins.policies.wan_pipeline:build_wan22_policy", forward_process="flow-matching")
