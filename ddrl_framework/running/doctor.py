"""``ddrl doctor CONFIG``: check a backbone + sampler pair before anyone spends GPU hours on it.

Each check builds on one small rollout of the experiment's own components and reports a value,
what it must be, and PASS / FAIL / SKIP. The checks are the ones peer frameworks' users keep
reporting broken: an on-policy ratio that is not 1, log-probs that do not match the scheduler,
samples outside [0, 1], a data loss that is NaN, gradients that never reach the adapters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import torch

from ddrl_framework.evaluation.scoring import score
from ddrl_framework.kit.pipeline_fidelity import BF16_ROUNDING, judged, pipeline_gaps
from ddrl_framework.kit.pipeline_fidelity import TOLERANCE as PIPELINE_TOLERANCE
from ddrl_framework.kit.role_outputs import on_policy_ratio_gap
from ddrl_framework.kit.scheduler_match import names_a_scheduler, scheduler_gap
from ddrl_framework.kit.seeding import make_generator
from ddrl_framework.protocols import FollowsPipelineSchedule, WrapsPipeline
from ddrl_framework.running.components import Components
from ddrl_framework.types import DataBatch, Trajectory

SANE_Z2 = (0.5, 2.0)  # the mean squared standardized step noise of on-policy samples is ~1


@attrs.frozen(kw_only=True)
class CheckResult:
    name: str
    value: str
    expected: str
    status: str  # "PASS", "FAIL" or "SKIP"


@attrs.frozen(kw_only=True)
class Probe:
    """One rollout of the experiment's components, shared by the checks."""

    parts: Components
    batch: DataBatch
    cond: object
    trajectory: Trajectory


def _result(name: str, ok: bool, value: str, expected: str) -> CheckResult:
    return CheckResult(name=name, value=value, expected=expected, status="PASS" if ok else "FAIL")


def _stochastic_steps(probe: Probe) -> list[int]:
    return [k for k in range(probe.trajectory.num_steps) if torch.isfinite(probe.trajectory.log_probs[k]).all()]


def check_ratio(probe: Probe) -> CheckResult:
    """The one on-policy ratio check (``kit.role_outputs``), as the sampler contract suite runs it."""
    parts = probe.parts
    with torch.no_grad():
        gap = on_policy_ratio_gap(parts.sampler, parts.policy, probe.trajectory, probe.cond, _stochastic_steps(probe))
    return _result("on-policy ratio == 1", gap.ok, f"max |ratio - 1| = {gap.worst:.2e}", "0 (bitwise)")


def check_log_prob_scale(probe: Probe) -> CheckResult:
    t, steps = probe.trajectory, _stochastic_steps(probe)
    if not steps:
        return CheckResult(name="log-probs finite, sane scale", value="no stochastic step",
                           expected="eta / noise_level > 0", status="FAIL")
    z2 = []
    for k in steps:
        z = (t.latents[k + 1].float() - t.means[k].float()) / t.stds[k].float()
        z2.append(float(z.square().mean()))
    finite = bool(torch.isfinite(t.log_probs[steps]).all())
    low, high = min(z2), max(z2)
    ok = finite and SANE_Z2[0] < low and high < SANE_Z2[1]
    return _result("log-probs finite, sane scale", ok, f"finite={finite}, E[z^2] in [{low:.3f}, {high:.3f}]",
                   "finite, E[z^2] ~ 1")


def check_scheduler_match(probe: Probe) -> CheckResult:
    sampler, policy, t = probe.parts.sampler, probe.parts.policy, probe.trajectory
    if not names_a_scheduler(sampler):
        return CheckResult(name="zero noise == scheduler step", value="sampler has no scheduler_step",
                           expected="-", status="SKIP")
    gap = scheduler_gap(sampler, policy, t.latents, probe.cond)
    return _result("zero noise == scheduler step", gap.ok, f"max |diff| = {gap.worst:.2e}",
                   f"<= {gap.tolerance:.1e}")


def check_pipeline_fidelity(probe: Probe) -> CheckResult:
    """The zero-noise rollout against the diffusers pipeline's own sampling, after one step and at the
    end (kit.pipeline_fidelity)."""
    name = "zero-noise rollout == pipeline.__call__"
    policy = probe.parts.policy
    if not isinstance(policy, WrapsPipeline):
        return CheckResult(name=name, value="the policy wraps no diffusers pipeline", expected="-", status="SKIP")
    if not isinstance(probe.parts.sampler, FollowsPipelineSchedule):
        return CheckResult(name=name, value="the sampler cannot run on the pipeline's schedule", expected="-",
                           status="SKIP")
    gaps = pipeline_gaps(policy, probe.parts.sampler)
    if not judged(policy):
        return CheckResult(name=name, value=f"/ std: {gaps}, in bf16: not judged (rounding alone reaches "
                           f"{BF16_ROUNDING:.1e}; the exact check: --set policy.mixed_precision=no)",
                           expected=f"<= {PIPELINE_TOLERANCE:.0e} in float32", status="SKIP")
    return _result(name, gaps.worst <= PIPELINE_TOLERANCE, f"/ std: {gaps}", f"<= {PIPELINE_TOLERANCE:.0e}")


def check_decoded_range(probe: Probe) -> CheckResult:
    with torch.no_grad():
        pixels = probe.parts.policy.decode(probe.trajectory.final)
    low, high = float(pixels.min()), float(pixels.max())
    ok = bool(torch.isfinite(pixels).all()) and low >= 0 and high <= 1
    return _result("decoded samples in [0, 1]", ok, f"[{low:.3f}, {high:.3f}], shape {tuple(pixels.shape[1:])}",
                   "within [0, 1]")


def check_rewards(probe: Probe) -> CheckResult:
    with torch.no_grad():
        pixels = probe.parts.policy.decode(probe.trajectory.final)
        rewards, _ = score(probe.parts.rewards, pixels, probe.batch.prompts, {"labels": probe.batch.labels})
    ok = bool(torch.isfinite(rewards).all())
    return _result("rewards finite", ok, f"mean {float(rewards.mean()):.4g}, std {float(rewards.std()):.3g}",
                   "finite")


def check_data_loss(probe: Probe) -> CheckResult:
    data = probe.batch
    if data.x0 is None:
        return CheckResult(name="data loss finite", value="the data source has no x0", expected="-",
                           status="SKIP")
    policy = probe.parts.policy
    with torch.no_grad():
        loss = policy.diffusion_loss(policy.encode(data.x0), policy.encode_conditions(data))
    return _result("data loss finite", math.isfinite(float(loss)), f"{float(loss):.4g}", "finite")


def check_gradients(probe: Probe) -> CheckResult:
    parts, t = probe.parts, probe.trajectory
    params = list(parts.policy.trainable_parameters())
    if not params:
        return _result("gradients reach trainable params", False, "no trainable parameters", "> 0")
    for p in params:
        p.grad = None
    for k in _stochastic_steps(probe):  # every step: one may not depend on the network (e.g. a clamp)
        step = parts.sampler.transition(parts.policy, t.latents[k], k, probe.cond)
        step.log_prob(t.latents[k + 1]).mean().backward()
    reached = sum(1 for p in params if p.grad is not None and bool(p.grad.abs().sum() > 0))
    finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
    for p in params:
        p.grad = None
    count = sum(p.numel() for p in params)
    return _result("gradients reach trainable params", reached > 0 and finite,
                   f"{reached}/{len(params)} tensors ({count:,} params), finite={finite}", "> 0, finite")


CHECKS: tuple[Callable[[Probe], CheckResult], ...] = (
    check_ratio, check_log_prob_scale, check_scheduler_match, check_pipeline_fidelity, check_decoded_range, check_rewards,
    check_data_loss, check_gradients,
)


def make_probe(parts: Components, samples: int, seed: int, device: torch.device) -> Probe:
    batch = next(parts.data.loader(samples, seed)).to(device)
    generator = make_generator(device, seed)
    policy = parts.policy
    cond = policy.encode_conditions(batch)
    noise = torch.randn((samples, *policy.sample_shape), generator=generator, device=device)
    trajectory = parts.sampler.rollout(policy, cond, noise, generator)
    return Probe(parts=parts, batch=batch, cond=cond, trajectory=trajectory)


def run_checks(probe: Probe) -> list[CheckResult]:
    results = []
    for check in CHECKS:
        try:
            results.append(check(probe))
        except Exception as error:  # a crashing check is a failed check, with its reason
            results.append(CheckResult(name=check.__name__.removeprefix("check_").replace("_", " "),
                                       value=f"raised {type(error).__name__}: {error}"[:120],
                                       expected="no error", status="FAIL"))
    return results


def format_table(results: list[CheckResult]) -> str:
    rows = [("check", "value", "expected", "status")] + [(r.name, r.value, r.expected, r.status) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
