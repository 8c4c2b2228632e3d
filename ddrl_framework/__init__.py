"""ddrl-framework: RL post-training of diffusion and flow models (DDRL, arXiv 2512.04332)."""

__version__ = "0.1.0"
