"""The pipeline-fidelity check as an assertion, for a backbone's tests (the measurement and what
it compares: :mod:`ddrl_framework.kit.pipeline_fidelity`)."""

from __future__ import annotations

from typing import Any

from ddrl_framework.kit.pipeline_fidelity import TOLERANCE, pipeline_gap


def check_matches_pipeline(policy: Any, sampler: Any, tolerance: float = TOLERANCE) -> float:
    gap = pipeline_gap(policy, sampler)
    assert gap <= tolerance, (
        f"the policy's zero-noise rollout differs from {type(policy.pipeline).__name__}.__call__ by "
        f"{gap:.3g} of the pipeline's latent std (at most {tolerance:g} expected): the denoiser's inputs, "
        "its timestep scale, the text encoding, guidance or the schedule differ from the pipeline's")
    return gap
