"""The pipeline-fidelity check as an assertion, for a backbone's tests (the measurement and what
it compares: :mod:`ddrl_framework.kit.pipeline_fidelity`)."""

from __future__ import annotations

from typing import Any

from ddrl_framework.kit.pipeline_fidelity import BF16_ROUNDING, TOLERANCE, PipelineGaps, judged, pipeline_gaps


def check_matches_pipeline(policy: Any, sampler: Any, tolerance: float = TOLERANCE) -> PipelineGaps:
    if not judged(policy):
        raise ValueError(f"the pipeline-fidelity check judges a policy that computes in float32; this one computes in "
                         f"{policy.compute_dtype} (mixed_precision), where rounding alone reaches {BF16_ROUNDING:g}")
    gaps = pipeline_gaps(policy, sampler)
    name = f"{type(policy.pipeline).__name__}.__call__"
    assert gaps.first_step <= tolerance, (
        f"one denoiser call differs from {name}'s first step by {gaps.first_step:.3g} of the pipeline's latent "
        f"std (at most {tolerance:g} expected): the denoiser's inputs, its timestep scale, the text encoding "
        "or guidance differ from the pipeline's")
    assert gaps.rollout <= tolerance, (
        f"the policy's zero-noise rollout differs from {name} by {gaps.rollout:.3g} of the pipeline's latent "
        f"std (at most {tolerance:g} expected), while the first step matches: the schedule differs")
    return gaps
