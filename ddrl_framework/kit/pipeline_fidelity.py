"""Is a diffusers backbone's rollout the diffusers pipeline's own sampling? For the same initial
noise and prompts, the policy's zero-noise rollout (the sampler's deterministic form, on the
pipeline's own schedule) must equal ``pipeline(latents=noise, output_type="latent")``: the
denoiser's inputs, its timestep scale, the text encoding, classifier-free guidance and the
schedule all enter both. :func:`pipeline_gaps` measures the difference after the first step (one
denoiser call) and at the end;
``ddrl doctor`` reports it and ``ddrl_framework.testing.pipeline_fidelity`` asserts it.

The sampler sets itself to the pipeline's schedule for the check (its ``on_pipeline_schedule``,
``FollowsPipelineSchedule``): ``ddim-sde`` on a DDPM backbone is compared with the pipeline run by
``DDIMScheduler`` at eta 0 (its spacing, ``steps_offset`` and final alpha from the backbone's
scheduler config), ``flow-sde`` with ``FlowMatchEulerDiscreteScheduler``, the pipeline's own (a
pipeline that solves with another scheduler, as Wan 2.1's folders do with UniPC, is run with Euler
at the policy's shift: flow-sde is an Euler SDE by design). Where the sampler's configured defaults
differ from the pipeline's (ddim-sde's "trailing" spacing, which starts from pure noise), that
is a documented choice of the sampler, not a gap in the backbone.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.protocols import FollowsPipelineSchedule
from ddrl_framework.types import DataBatch

PROMPTS = ("a photo of a cat", "a red cube on a table")
TOLERANCE = 1e-4  # of the pipeline's final latents' std: float32 rounding, not a different model
# In bf16 the two sides round differently (the pipeline keeps bf16 latents between steps, the samplers
# float32): up to 5.5e-2 on the tiny configs (benchmarks/pipeline_fidelity.py --mixed-precision bf16), as
# much as a timestep 1000 times too large gives after one step. The check judges float32 only.
BF16_ROUNDING = 5.5e-2


def judged(policy: Any) -> bool:
    """Whether the check can tell a different model from rounding: the policy computes in float32."""
    return policy.compute_dtype == torch.float32


def on_pipeline_schedule(sampler: Any, policy: Any) -> tuple[Any, Any]:
    """The sampler's deterministic form on the pipeline's schedule, and the diffusers scheduler the
    pipeline samples with at zero noise (the sampler says how: ``FollowsPipelineSchedule``)."""
    if not isinstance(sampler, FollowsPipelineSchedule):
        raise ValueError(f"{type(sampler).__name__} cannot run on a diffusers pipeline's schedule (it has no "
                         "on_pipeline_schedule), so the pipeline-fidelity check cannot compare it")
    return sampler.on_pipeline_schedule(policy)


def pipeline_latents(policy: Any, scheduler: Any, noise: Tensor, prompts: Sequence[str], steps: int) -> tuple[Tensor, Tensor]:
    """The pipeline's own sampling from ``noise``: its latents after the first step (one denoiser
    call, through ``callback_on_step_end``) and its final latents."""
    pipeline, own = policy.pipeline, policy.pipeline.scheduler
    first: list[Tensor] = []
    pipeline.scheduler = scheduler
    try:
        with torch.no_grad(), policy.autocast():  # the precision the policy's rollouts run at
            out = pipeline(prompt=list(prompts), latents=policy.to_pipeline_latents(noise.clone()),
                           num_inference_steps=steps, output_type="latent", **_first_step_callback(pipeline, first),
                           **policy.pipeline_call_options())
    finally:
        pipeline.scheduler = own
    final = torch.as_tensor(out.frames if hasattr(out, "frames") else out.images)
    return policy.from_pipeline_latents(first[0]), policy.from_pipeline_output(final)


def _first_step_callback(pipeline: Any, first: list[Tensor]) -> dict[str, Any]:
    """The ``__call__`` options that append the latents after step 0 to ``first``: the step-end
    callback of current pipelines, or the older ``callback(step, t, latents)`` (PixArt's)."""
    def keep(step: int, latents: Tensor) -> None:
        if step == 0:
            first.append(latents.clone())

    if "callback_on_step_end" in inspect.signature(pipeline.__call__).parameters:
        return {"callback_on_step_end": lambda _p, step, _t, tensors: keep(step, tensors["latents"]) or {}}
    return {"callback": lambda step, _t, latents: keep(step, latents), "callback_steps": 1}


@attrs.frozen
class PipelineGaps:
    """``max |ours - pipeline| / std(pipeline)`` after the first step (one denoiser call: its inputs,
    timestep scale, text and guidance) and over the whole rollout (the schedule too)."""

    first_step: float
    rollout: float

    @property
    def worst(self) -> float:
        return max(self.first_step, self.rollout)

    def __str__(self) -> str:
        return f"first step {self.first_step:.2e}, rollout {self.rollout:.2e}"


def pipeline_gaps(policy: Any, sampler: Any, prompts: Sequence[str] = PROMPTS, seed: int = 0) -> PipelineGaps:
    """The policy's zero-noise rollout against the pipeline's own sampling (0: the same numbers)."""
    deterministic, scheduler = on_pipeline_schedule(sampler, policy)
    noise = torch.randn((len(prompts), *policy.sample_shape), generator=torch.Generator().manual_seed(seed))
    noise = noise.to(policy.device)
    cond = policy.encode_conditions(DataBatch(prompts=tuple(prompts)))
    with torch.no_grad():
        ours = deterministic.rollout(policy, cond, noise.clone()).latents
    first, final = (x.to(ours.device).float() for x in
                    pipeline_latents(policy, scheduler, noise, prompts, deterministic.num_steps))
    return PipelineGaps(first_step=_relative(ours[1], first), rollout=_relative(ours[-1], final))


def _relative(ours: Tensor, theirs: Tensor) -> float:
    return float((ours.float() - theirs).abs().max() / theirs.std())
