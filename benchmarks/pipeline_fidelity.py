"""How closely each built-in diffusers backbone samples as its own diffusers pipeline: the largest
difference between the policy's zero-noise rollout and ``pipeline(latents=..., output_type="latent")``
from the same noise and prompts, as a fraction of the pipeline's latent std
(``ddrl_framework/kit/pipeline_fidelity.py``), on the tiny configurations, without and with guidance.

    python benchmarks/pipeline_fidelity.py [--steps 4] [--mixed-precision bf16]

With ``--mixed-precision bf16`` the two sides round differently (the pipeline keeps bf16 latents
between steps): the rows then say how large rounding alone gets, the reason the check judges float32
policies only (``kit/pipeline_fidelity.py``'s ``BF16_ROUNDING``).

The table in docs/backbones.md ("Every built-in samples as its pipeline does") is its output.
"""

from __future__ import annotations

import argparse

from ddrl_framework.kit.pipeline_fidelity import pipeline_gaps
from ddrl_framework.registry import load_registry

CASES = [  # (policy, its options, sampler, guidance used with it)
    ("stable-diffusion", {}, "ddim-sde", 3.0),
    ("sd3", {}, "flow-sde", 3.0),
    ("flux", {}, "flow-sde", 3.0),
    ("flux", {"variant": "schnell"}, "flow-sde", 3.0),
    ("flux2-klein", {}, "flow-sde", 4.0),
    ("qwen-image", {}, "flow-sde", 4.0),
    ("qwen-image", {"negative_prompt": "blurry, low quality"}, "flow-sde", 4.0),
    ("wan", {}, "flow-sde", 3.0),
    ("wan2.2", {}, "flow-sde", 4.0),
    ("wan2.2", {"lora_rank": 2}, "flow-sde", 4.0),
    ("wan2.2", {"guidance_scale_2": 2.0}, "flow-sde", 4.0),
    ("wan2.2", {"variant": "2.2-ti2v"}, "flow-sde", 3.0),
]


GUIDED_ONLY = {"guidance_scale_2"}  # options a backbone refuses without guidance


def gap(registry, name: str, options: dict, sampler: str, guidance: float, steps: int, precision: str) -> float:
    options = {k: v for k, v in options.items() if guidance > 1 or k not in GUIDED_ONLY}
    options = {**options, "guidance_scale": guidance, "mixed_precision": precision}
    policy = registry.build("policy", name, options, "[policy]")
    sampler = registry.build("sampler", sampler, {"denoising_steps": steps}, "[sampler]")
    return pipeline_gaps(policy, sampler).worst  # the larger of the first step's and the rollout's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    args = parser.parse_args()
    registry = load_registry()
    print(f"max |ours - pipeline| / std(pipeline) after the first step and at the end, the larger; {args.steps} steps, "
          f"mixed_precision {args.mixed_precision}\n")
    print("| backbone | options | no guidance | guidance |")
    print("|---|---|---|---|")
    for name, options, sampler, guidance in CASES:
        plain, guided = (gap(registry, name, options, sampler, g, args.steps, args.mixed_precision)
                         for g in (1.0, guidance))
        shown = ", ".join(f"{k}={v}" for k, v in options.items()) or "-"
        print(f"| `{name}` | {shown} | {plain:.2g} | {guided:.2g} (at {guidance:g}) |")


if __name__ == "__main__":
    main()
