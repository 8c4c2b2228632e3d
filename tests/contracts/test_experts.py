"""Wan 2.2 A14B's two experts (kit/experts.py): each sample goes to the expert of its timestep, as
WanPipeline switches at ``boundary_ratio * T``; both are trained, saved and referenced together."""

from __future__ import annotations

import pytest
import torch

from ddrl_framework.errors import UserError
from ddrl_framework.kit.experts import TimestepExperts
from ddrl_framework.kit.pipeline_fidelity import pipeline_gaps
from ddrl_framework.types import DataBatch
from tests.conftest import registry


def wan22(**options):
    return registry().build("policy", "wan2.2", options, "[policy]")


def test_a_mixed_batch_goes_to_each_samples_expert():
    policy = wan22()
    experts = policy.denoiser
    assert isinstance(experts, TimestepExperts) and experts.boundary == 875.0
    x = torch.randn(3, *policy.sample_shape, generator=torch.Generator().manual_seed(0))
    embeds = policy.encode_prompts(["a", "b", "c"])["encoder_hidden_states"]
    t = torch.tensor([990.0, 500.0, 875.0])  # high, low, high (the boundary is the high expert's)
    with torch.no_grad():
        mixed = experts(hidden_states=x, timestep=t, encoder_hidden_states=embeds, return_dict=False)[0]
        for i, expert in enumerate([experts.high, experts.low, experts.high]):
            alone = expert(hidden_states=x[i:i + 1], timestep=t[i:i + 1], encoder_hidden_states=embeds[i:i + 1],
                           return_dict=False)[0]
            torch.testing.assert_close(mixed[i:i + 1], alone)


def test_routing_every_step_to_one_expert_is_seen_by_the_fidelity_check():
    """The pipeline runs the high-noise expert for the first of 4 steps (t = 1000 >= 875) and the
    low-noise one after; a policy that used the high one throughout parts from it."""
    policy = wan22()
    sampler = registry().build("sampler", "flow-sde", {"denoising_steps": 4}, "[sampler]")
    assert pipeline_gaps(policy, sampler).worst <= 1e-4
    policy.denoiser.boundary = 0.0
    gaps = pipeline_gaps(policy, sampler)
    assert gaps.first_step <= 1e-4 and gaps.rollout > 0.01  # the first step is the high expert's in both


def test_the_low_noise_experts_own_guidance_scale_is_the_pipelines():
    """``guidance_scale_2``: WanPipeline's scale for the low-noise expert's steps. A policy that
    guided every step at the high-noise expert's scale parts from it after the first step."""
    policy = wan22(guidance_scale=4.0, guidance_scale_2=2.0)
    sampler = registry().build("sampler", "flow-sde", {"denoising_steps": 4}, "[sampler]")
    assert pipeline_gaps(policy, sampler).worst <= 1e-4
    t = torch.tensor([990.0, 500.0])
    assert policy.guidance_scale_at(t, 4.0, torch.zeros(2, 3)).flatten().tolist() == [4.0, 2.0]
    policy.guidance_scale_2 = None  # guided at 4 throughout, while the pipeline is told 2 below the boundary
    policy.pipeline_call_options = lambda: {**type(policy).pipeline_call_options(policy), "guidance_scale_2": 2.0}
    gaps = pipeline_gaps(policy, sampler)
    assert gaps.first_step <= 1e-4 and gaps.rollout > 0.01


def test_a_second_guidance_scale_needs_two_experts_and_guidance():
    with pytest.raises(UserError, match="policy 'wan'.*guidance_scale_2 = 2.0: only Wan 2.2 A14B's two experts"):
        registry().build("policy", "wan", {"guidance_scale_2": 2.0, "guidance_scale": 4.0}, "[policy]")
    with pytest.raises(UserError, match="guidance_scale_2 = 2.0 with guidance_scale = 1.0: WanPipeline guides only"):
        wan22(guidance_scale_2=2.0)


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_both_experts_are_trained_and_referenced(lora_rank):
    policy = wan22(lora_rank=lora_rank)
    names = [name for name, _ in policy.named_trainable_parameters()]
    assert any(n.startswith("high.") for n in names) and any(n.startswith("low.") for n in names)
    frozen = [p for m in (policy.pipeline.vae, policy.pipeline.text_encoder) for p in m.parameters()]
    assert not any(p.requires_grad for p in frozen)
    reference = policy.reference()
    for _, p in policy.named_trainable_parameters():
        p.data.add_(0.01)  # as an optimizer step would
    x = torch.randn(1, *policy.sample_shape, generator=torch.Generator().manual_seed(0))
    cond = policy.encode_conditions(DataBatch(prompts=("a",)))
    for t in (990.0, 100.0):  # one step of each expert: the reference is the policy as it was
        with torch.no_grad():
            moved = policy.predict(x, torch.tensor([t]), cond)
            before = reference.predict(x, torch.tensor([t]), cond)
        assert (moved - before).abs().max() > 0
