"""The kit: what plugins share, so that each plugin is a few lines of its own math.

Forward processes (noising, targets, the inverse, the diffusion loss), the chain of Gaussian
transitions a sampler rolls out, group advantages and the clipped policy loss, the base class of
the diffusers backbones, resumable data nodes, file readers, atomic writes, the cache folder,
seeding, and the tiny text encoders of the CPU-sized backbone configurations.

May import: the contracts (``ddrl_framework.protocols``, ``types``, ``errors``, ...) and
``ddrl_framework.distributed``. Never the running, evaluation or comparison layers, and never a
plugin (checked by import-linter, ``pyproject.toml``).
"""
