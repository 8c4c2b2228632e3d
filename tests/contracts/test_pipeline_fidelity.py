"""Each diffusers backbone samples as its own diffusers pipeline does: the zero-noise rollout from
the same noise and prompts equals ``pipeline(latents=..., output_type="latent")``, with guidance 3,
4 steps (ddrl_framework/testing/pipeline_fidelity.py). And the check sees a planted timestep-scale
bug and a schedule that is not the pipeline's."""

from __future__ import annotations

import attrs
import pytest

from ddrl_framework.registry import load_registry
from ddrl_framework.kit.pipeline_fidelity import TOLERANCE, pipeline_gaps
from ddrl_framework.testing.pipeline_fidelity import check_matches_pipeline

BACKBONES = [("sd3", "flow-sde"), ("stable-diffusion", "ddim-sde"), ("wan", "flow-sde"), ("wan2.2", "flow-sde"),
             ("flux", "flow-sde"), ("qwen-image", "flow-sde"), ("flux2-klein", "flow-sde")]


def build(policy: str, sampler: str):
    registry = load_registry()
    return (registry.build("policy", policy, {"guidance_scale": 3.0}, "[policy]"),
            registry.build("sampler", sampler, {"denoising_steps": 4}, "[sampler]"))


@pytest.mark.parametrize("policy_name,sampler_name", BACKBONES)
def test_the_zero_noise_rollout_is_the_pipelines_own_sampling(policy_name, sampler_name):
    policy, sampler = build(policy_name, sampler_name)
    assert check_matches_pipeline(policy, sampler).worst <= TOLERANCE


@pytest.mark.parametrize("policy_name,sampler_name", BACKBONES)
def test_a_timestep_scale_bug_is_seen(policy_name, sampler_name, monkeypatch):
    """The issue's planted bug: the network gets a timestep 1000 times too large."""
    policy, sampler = build(policy_name, sampler_name)
    monkeypatch.setattr(policy, "timestep_scale", policy.timestep_scale * 1000)
    with pytest.raises(AssertionError, match="one denoiser call differs from .*Pipeline.__call__'s first step"):
        check_matches_pipeline(policy, sampler)


def test_a_schedule_that_is_not_the_pipelines_is_seen():
    """The policy's forward process with another sigma shift (1 where the pipeline's scheduler
    has 3): flow-sde's sigmas are no longer the pipeline's, and the rollouts part."""
    policy, sampler = build("sd3", "flow-sde")
    assert policy.pipeline.scheduler.config.shift == 3.0
    config = {**policy.forward_process.scheduler_config, "shift": 1.0}
    object.__setattr__(policy, "forward_process", attrs.evolve(policy.forward_process, scheduler_config=config))
    assert pipeline_gaps(policy, sampler).rollout > 0.01


def test_sds_leading_timesteps_carry_the_schedulers_offset():
    """SD's scheduler adds steps_offset = 1 to its leading timesteps: t = 751..1 at 4 steps."""
    policy, sampler = build("stable-diffusion", "ddim-sde")
    assert policy.forward_process.steps_offset == 1
    leading = attrs.evolve(sampler, timestep_spacing="leading")
    assert leading.coefficients(policy).timesteps.tolist() == [751, 501, 251, 1]
    assert attrs.evolve(leading, steps_offset=0).coefficients(policy).timesteps.tolist() == [750, 500, 250, 0]
    assert sampler.coefficients(policy).timesteps.tolist() == [999, 749, 499, 249]  # trailing: no offset


@pytest.mark.parametrize("change", [{"mu": None}, {"pipeline_sigmas": False}], ids=["no mu", "default sigmas"])
def test_flux_without_the_pipelines_dynamic_shift_or_sigmas_is_seen(change):
    """FluxPipeline passes linspace(1, 1/N, N) sigmas shifted by mu (from the image's token count).
    Dropping either (what flow-sde did before) parts the rollout from the pipeline's."""
    policy, sampler = build("flux", "flow-sde")
    assert policy.forward_process.mu == pytest.approx(0.4675)  # 64 tokens: 0.5 + (64 - 256) 0.65 / 3840
    process = attrs.evolve(policy.forward_process, **{**change, "scheduler_config": {
        **policy.forward_process.scheduler_config, "use_dynamic_shifting": change.get("mu", 0) is not None}})
    object.__setattr__(policy, "forward_process", process)
    assert pipeline_gaps(policy, sampler).rollout > 0.01


@pytest.mark.parametrize("option,value", [("stochastic_sampling", True), ("invert_sigmas", True),
                                          ("use_dynamic_shifting", True)])
def test_a_scheduler_option_the_samplers_cannot_honour_is_named(option, value):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from ddrl_framework.kit.diffusers_policy import flow_matching_process

    with pytest.raises(ValueError, match=option):
        flow_matching_process(FlowMatchEulerDiscreteScheduler(**{option: value}))


def test_a_folder_whose_scheduler_cannot_be_honoured_exits_2_naming_the_option(tmp_path, capsys):
    """End to end: a FLUX folder saved with stochastic_sampling = true is refused before any work."""
    from ddrl_framework.cli import main
    from tests.conftest import CONFIGS

    policy, _ = build("flux", "flow-sde")
    policy.pipeline.scheduler.register_to_config(stochastic_sampling=True)
    policy.save_pretrained(tmp_path / "folder")
    code = main(["doctor", str(CONFIGS / "flux-tiny.toml"), "--quiet", "--set", f"policy.pretrained={tmp_path / 'folder'}"])
    assert code == 2
    assert "[policy]" in (err := capsys.readouterr().err) and "stochastic_sampling" in err


def test_flux2_klein_without_the_step_counts_mu_is_seen():
    """Flux2KleinPipeline's mu depends on the step count too (compute_empirical_mu(tokens, N)):
    rolling out 4 steps with the training sigmas' mu (the one at 50 steps) parts it from the pipeline."""
    policy, sampler = build("flux2-klein", "flow-sde")
    process = policy.forward_process
    assert process.mu == pytest.approx(1.6015, abs=1e-4) and process.inference_mu(4) == pytest.approx(1.9493, abs=1e-4)
    object.__setattr__(policy, "forward_process", attrs.evolve(process, step_mu=None))
    assert pipeline_gaps(policy, sampler).rollout > 0.01


def test_the_assertion_refuses_a_bf16_policy():
    policy, sampler = build("sd3", "flow-sde")
    policy.options = attrs.evolve(policy.options, mixed_precision="bf16")
    with pytest.raises(ValueError, match="judges a policy that computes in float32; this one computes in torch.bfloat16"):
        check_matches_pipeline(policy, sampler)
