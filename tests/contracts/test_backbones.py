"""The diffusers backbones (stable-diffusion, sd3, flux, flux2-klein, qwen-image, wan, wan2.2) on their tiny random configurations: the
policy contract, saving and loading through ``from_pretrained``, guidance, LoRA, and the
``flow-sde`` sampler against diffusers' ``FlowMatchEulerDiscreteScheduler``."""

import json
import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from ddrl_framework.cli import main
from ddrl_framework.errors import UserError
from ddrl_framework.testing import PolicyContract, RegularizerContract, SamplerContract
from ddrl_framework.testing.fakes import fake_batch, make_step_context, pixel_shape
from tests.conftest import CONFIGS, build


class _Backbone(PolicyContract):
    name = ""
    options: dict = {}

    def make_policy(self):
        return build("policy", self.name, **self.options)

    def load_policy(self, directory):
        return build("policy", self.name, pretrained=str(directory), **self.options)


class TestStableDiffusion(_Backbone):
    name = "stable-diffusion"


class TestStableDiffusionVPredictionGuided(_Backbone):
    name, options = "stable-diffusion", {"prediction_type": "v_prediction", "guidance_scale": 4.0}


class TestStableDiffusionLora(_Backbone):
    name, options = "stable-diffusion", {"lora_rank": 4}


class TestSd3(_Backbone):
    name = "sd3"


class TestSd3LoraGuided(_Backbone):
    name, options = "sd3", {"lora_rank": 4, "lora_alpha": 8.0, "guidance_scale": 3.0}


class TestWan(_Backbone):
    name = "wan"


class TestWan22Experts(_Backbone):
    name = "wan2.2"


class TestWan22ExpertsLoraGuided(_Backbone):
    name, options = "wan2.2", {"lora_rank": 2, "guidance_scale": 4.0}


class TestWan22Ti2v(_Backbone):
    name, options = "wan2.2", {"variant": "2.2-ti2v"}


class TestQwenImage(_Backbone):
    name, options = "qwen-image", {"resolution": 32}  # a folder's default is 1024 px


class TestQwenImageLoraGuided(_Backbone):
    name, options = "qwen-image", {"resolution": 32, "lora_rank": 4, "guidance_scale": 4.0}


class TestFluxDev(_Backbone):
    # a folder's default resolution is FLUX's 1024 px: the tiny one's 32 is named to load it back
    name, options = "flux", {"resolution": 32}


class TestFluxSchnellLoraGuided(_Backbone):
    name, options = "flux", {"variant": "schnell", "resolution": 32, "lora_rank": 4, "guidance_scale": 3.0}


class TestFlux2Klein(_Backbone):
    name, options = "flux2-klein", {"resolution": 32}  # a folder's default is 1024 px


class TestFlux2KleinLoraGuided(_Backbone):
    name, options = "flux2-klein", {"resolution": 32, "lora_rank": 4, "guidance_scale": 4.0}


class TestFlowSdeOnSd3(SamplerContract):
    def make_sampler(self):
        return build("sampler", "flow-sde", denoising_steps=4, noise_level=0.7)

    def make_policy(self):
        return build("policy", "sd3")


class TestFlowSdeOnFluxDev(SamplerContract):
    def make_sampler(self):
        return build("sampler", "flow-sde", denoising_steps=4, noise_level=0.7)

    def make_policy(self):
        return build("policy", "flux")


class TestFlowSdeOnFlux2KleinGuided(SamplerContract):
    def make_sampler(self):
        return build("sampler", "flow-sde", denoising_steps=4, noise_level=0.7)

    def make_policy(self):
        return build("policy", "flux2-klein", guidance_scale=4.0)


class TestFlowSdeOnWanGuided(SamplerContract):
    batch_size = 2

    def make_sampler(self):
        return build("sampler", "flow-sde", denoising_steps=3, noise_level=1.0)

    def make_policy(self):
        return build("policy", "wan", guidance_scale=5.0)


class TestDdimSdeOnStableDiffusion(SamplerContract):
    def make_sampler(self):
        return build("sampler", "ddim-sde", denoising_steps=3, eta=1.0)

    def make_policy(self):
        return build("policy", "stable-diffusion", guidance_scale=3.0)


class TestForwardKLDataOnSd3(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "forward-kl-data", beta=1.0)

    def make_policy(self):
        return build("policy", "sd3")

    def make_sampler(self):
        return build("sampler", "flow-sde", denoising_steps=3)


class TestReverseKLOnLoraWan(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "reverse-kl", beta=1.0)

    def make_policy(self):
        return build("policy", "wan", lora_rank=2)

    def make_sampler(self):
        return build("sampler", "flow-sde", denoising_steps=3)


def test_flux2_klein_refuses_the_guidance_its_pipeline_would_ignore(tmp_path):
    """Flux2KleinPipeline guides against "" only, and a step-distilled folder not at all."""
    with pytest.raises(UserError, match="empty prompt"):
        build("policy", "flux2-klein", guidance_scale=4.0, negative_prompt="blurry")
    policy = build("policy", "flux2-klein")
    policy.pipeline.register_to_config(is_distilled=True)
    policy.save_pretrained(tmp_path / "distilled")
    with pytest.raises(UserError, match="step-distilled"):
        build("policy", "flux2-klein", pretrained=str(tmp_path / "distilled"), resolution=32, guidance_scale=4.0)


def test_flux2_klein_encodes_images_as_its_pipeline_encodes_condition_images():
    """The PATCHED_BATCH_NORM codec is Flux2KleinPipeline's _encode_vae_image (patchify, then the
    VAE's batch-norm statistics), and decoding inverts its normalization."""
    policy = build("policy", "flux2-klein")
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    theirs = policy.pipeline._encode_vae_image(pixels, generator=None)
    assert torch.allclose(policy.vae_encode(pixels), theirs, atol=1e-6)
    codec, vae = policy.vae_codec, policy.pipeline.vae
    assert torch.allclose(codec.normalize(vae, codec.denormalize(vae, theirs)), theirs, atol=1e-5)


def _euler_scheduler(policy, steps):
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(policy.forward_process.scheduler_config)
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize("name", ["sd3", "wan"])
def test_zero_noise_flow_sde_equals_the_flow_match_euler_step(name):
    policy = build("policy", name)
    sampler = build("sampler", "flow-sde", denoising_steps=5, noise_level=0.0)
    scheduler = _euler_scheduler(policy, 5)
    assert torch.allclose(sampler.timesteps(policy), scheduler.timesteps)
    cond = policy.encode_conditions(fake_batch(2, pixel_shape(policy)))
    x = torch.randn((2, *policy.sample_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for k, t in enumerate(scheduler.timesteps):
            ours = sampler.transition(policy, x, k, cond)
            theirs = scheduler.step(policy.predict(x, t.expand(2), cond), t, x).prev_sample
            assert float(ours.std) == 0.0
            assert torch.allclose(ours.mean, theirs, atol=1e-5), f"step {k}"
            x = theirs


def _flow_grpo_step(v, x, sigma, sigma_next, sigma_max, a):
    """Flow-GRPO's ``sde_step_with_logprob`` (arXiv 2505.05470, eq. 9), written out independently."""
    std_dev_t = math.sqrt(sigma / (1 - (sigma_max if sigma == 1 else sigma))) * a
    dt = sigma_next - sigma
    mean = (x * (1 + std_dev_t**2 / (2 * sigma) * dt)
            + v * (1 + std_dev_t**2 * (1 - sigma) / (2 * sigma)) * dt)
    return mean, std_dev_t * math.sqrt(-dt)


def test_stochastic_flow_sde_step_equals_flow_grpo_and_its_density():
    policy = build("policy", "sd3")
    sampler = build("sampler", "flow-sde", denoising_steps=4, noise_level=0.7)
    sigmas = _euler_scheduler(policy, 4).sigmas
    cond = policy.encode_conditions(fake_batch(2, pixel_shape(policy)))
    x = torch.randn((2, *policy.sample_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for k in range(4):
            ours = sampler.transition(policy, x, k, cond)
            v = policy.predict(x, (sigmas[k] * 1000).expand(2), cond)
            mean, std = _flow_grpo_step(v, x, float(sigmas[k]), float(sigmas[k + 1]), float(sigmas[1]), 0.7)
            assert torch.allclose(ours.mean, mean, atol=1e-5) and math.isclose(float(ours.std), std, rel_tol=1e-6)
            x = ours.sample(torch.Generator().manual_seed(k))
            normal = torch.distributions.Normal(mean.double(), std)
            assert torch.allclose(ours.log_prob(x).double(), normal.log_prob(x.double()).flatten(1).sum(1),
                                  rtol=1e-5)


def test_flow_loss_regresses_the_velocity_at_the_schedules_sigma():
    policy = build("policy", "sd3")
    x0 = torch.randn((2, *policy.sample_shape))
    noise, t = torch.randn_like(x0), torch.tensor([250.0, 750.0])
    x_t = policy.add_noise(x0, noise, t)
    assert torch.allclose(x_t[0], 0.75 * x0[0] + 0.25 * noise[0], atol=1e-6)
    assert torch.equal(policy.training_target(x0, noise, t), noise - x0)
    drawn = policy.forward_process.random_timesteps(10_000, torch.Generator().manual_seed(0), "cpu") / 1000
    shifted_median = 3 * 0.5 / (1 + 2 * 0.5)  # the shift-3 image of a uniform sigma's median
    assert abs(drawn.median().item() - shifted_median) < 0.02


def test_guidance_combines_the_conditional_and_negative_outputs():
    policy = build("policy", "stable-diffusion", guidance_scale=4.0, negative_prompt="blurry")
    batch = fake_batch(2, pixel_shape(policy))
    cond = policy.encode_conditions(batch)
    x, t = torch.randn((2, *policy.sample_shape)), torch.tensor([100, 800])
    with torch.no_grad():
        conditional = policy.predict(x, t, cond.unguided())
        negative = policy.predict(x, t, type(cond)(embeds=cond.negative))
        guided = policy.predict(x, t, cond)
    assert torch.allclose(guided, negative + 4.0 * (conditional - negative), atol=1e-5)


def test_prompt_embeddings_are_cached_per_prompt():
    policy = build("policy", "stable-diffusion")
    calls = []
    encode = policy.encode_prompts
    policy.encode_prompts = lambda prompts: calls.append(list(prompts)) or encode(prompts)
    policy.encode_conditions(fake_batch(4, pixel_shape(policy)))  # prompts 0, 1, 2, 0
    policy.encode_conditions(fake_batch(2, pixel_shape(policy)))
    assert calls == [["prompt 0"], ["prompt 1"], ["prompt 2"]]


def test_lora_reference_is_the_base_network_without_a_second_copy():
    policy = build("policy", "sd3", lora_rank=4)
    reference = policy.reference()
    assert reference.denoiser is policy.denoiser  # no copy in memory
    trainable = policy.trainable_state_dict()
    assert trainable and all("lora" in name for name in trainable)
    snapshot = dict(reference.named_trainable_parameters())  # the adapters' seeded initial values
    assert list(snapshot) == list(trainable) and all(not v.requires_grad for v in snapshot.values())
    assert all(torch.count_nonzero(v) == 0 for n, v in snapshot.items() if "lora_B" in n)
    cond = policy.encode_conditions(fake_batch(2, pixel_shape(policy)))
    x, t = torch.randn((2, *policy.sample_shape)), torch.tensor([100.0, 800.0])
    with torch.no_grad():
        base = reference.predict(x, t, cond)
        assert torch.equal(policy.predict(x, t, cond), base)  # LoRA B starts at zero
        for p in policy.trainable_parameters():
            p.add_(0.05)
        assert not torch.allclose(policy.predict(x, t, cond), base)
        assert torch.equal(reference.predict(x, t, cond), base)


def test_lora_save_pretrained_merges_the_adapters(tmp_path):
    policy = build("policy", "stable-diffusion", lora_rank=4)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.add_(0.05)
    policy.save_pretrained(tmp_path / "merged")
    plain = build("policy", "stable-diffusion", pretrained=str(tmp_path / "merged"))
    cond = policy.encode_conditions(fake_batch(2, pixel_shape(policy)))
    x, t = torch.randn((2, *policy.sample_shape)), torch.tensor([100, 800])
    with torch.no_grad():
        assert torch.allclose(plain.predict(x, t, cond), policy.predict(x, t, cond), atol=1e-5)


def test_checkpoint_of_other_lora_options_is_refused():
    state = build("policy", "sd3", lora_rank=4).trainable_state_dict()
    with pytest.raises(ValueError, match="other LoRA options"):
        build("policy", "sd3").load_trainable_state_dict(state)


def test_bf16_autocast_keeps_log_probs_float32():
    policy = build("policy", "sd3", mixed_precision="bf16")
    context = make_step_context(policy, build("sampler", "flow-sde", denoising_steps=2), groups=1, group_size=2)
    assert context.trajectory.log_probs.dtype == torch.float32
    assert torch.isfinite(context.trajectory.log_probs).all()


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_a_folder_loads_in_the_dtypes_bf16_training_keeps(tmp_path, lora_rank):
    """``mixed_precision = "bf16"``: a folder loads its frozen parts in bf16 (no float32 copy on the
    way: ``from_pretrained(torch_dtype=...)``), and with LoRA the denoiser's base weights too; the
    weights the optimizer updates (the adapters, or the whole denoiser) are float32 and get gradients."""
    build("policy", "sd3").save_pretrained(tmp_path / "folder")
    policy = build("policy", "sd3", pretrained=str(tmp_path / "folder"), resolution=32, mixed_precision="bf16",
                   lora_rank=lora_rank)
    assert {p.dtype for p in policy.pipeline.text_encoder_3.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in policy.pipeline.vae.parameters()} == {torch.bfloat16}
    trained = [p for p in policy.denoiser.parameters() if p.requires_grad]
    frozen = [p for p in policy.denoiser.parameters() if not p.requires_grad]
    assert {p.dtype for p in trained} == {torch.float32}
    assert {p.dtype for p in frozen} == ({torch.bfloat16} if lora_rank else set())
    cond = policy.encode_conditions(fake_batch(2, pixel_shape(policy)))
    policy.diffusion_loss(torch.randn((2, *policy.sample_shape)), cond).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)


def test_a_saved_tiny_flux2_klein_folder_reads_its_own_text_layers(tmp_path):
    build("policy", "flux2-klein").save_pretrained(tmp_path / "folder")
    policy = build("policy", "flux2-klein", pretrained=str(tmp_path / "folder"), resolution=32)
    assert policy.text_encoder_out_layers == (1, 2, 3)  # a real folder's 36-layer Qwen3: (9, 18, 27)
    assert policy.encode_prompts(["a cat"])["encoder_hidden_states"].shape[-1] == 3 * 16


def test_a_setting_the_policy_class_does_not_have_is_refused():
    policy = build("policy", "sd3")
    with pytest.raises(TypeError, match="Sd3Policy has no setting 'max_sequence_lenght'"):
        type(policy)(policy.pipeline, policy.forward_process, policy.sample_shape, policy.pixel_shape,
                     policy.options, max_sequence_lenght=77)


def test_training_options_are_checked_like_any_option():
    with pytest.raises(UserError, match="unknown option 'lora_rnk'.*Did you mean 'lora_rank'"):
        build("policy", "sd3", lora_rnk=4)
    with pytest.raises(UserError, match="lora_rank"):
        build("policy", "wan", lora_rank="4")


def test_samplers_name_the_right_sampler_for_the_backbone():
    flow_policy, ddpm_policy = build("policy", "sd3"), build("policy", "stable-diffusion")
    x = torch.randn((1, *flow_policy.sample_shape))
    cond = flow_policy.encode_conditions(fake_batch(1, pixel_shape(flow_policy)))
    with pytest.raises(ValueError, match="use the flow-sde sampler"):
        build("sampler", "ddim-sde").transition(flow_policy, x, 0, cond)
    with pytest.raises(ValueError, match="use the ddim-sde sampler"):
        build("sampler", "flow-sde").transition(ddpm_policy, x, 0, cond)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["sd", "sd3", "wan"])
@pytest.mark.parametrize("regularizer,key", [("none", "loss_none"), ("reverse-kl", "loss_reverse_kl"),
                                             ("forward-kl-data", "loss_forward_kl_data")])
def test_tiny_configs_train_with_each_regularizer(tmp_path, backbone, regularizer, key):
    output = tmp_path / "run"
    argv = ["train", str(CONFIGS / f"{backbone}-tiny.toml"), "--quiet", "--set", f"output_dir={output}",
            "--set", f"regularizer={{name='{regularizer}'}}", "--set", "train.iterations=2"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1]
    assert all(r["ratio_first_step"] == 1.0 and math.isfinite(r[key]) for r in records)
    assert (output / "samples_final.png").is_file()
    assert (output / "samples_final.gif").is_file() == (backbone == "wan")


@pytest.mark.slow
def test_a_lora_run_resumes_to_the_same_metrics(tmp_path):
    def run(name, *extra):
        argv = ["train", str(CONFIGS / "sd3-tiny.toml"), "--quiet", "--set", f"output_dir={tmp_path / name}",
                "--set", "policy.lora_rank=4", "--set", "train.eval_every=0", *extra]
        assert main(argv) == 0
        return (tmp_path / name / "metrics.jsonl").read_text().splitlines()

    straight = run("straight", "--set", "train.iterations=4")
    run("resumed", "--set", "train.iterations=2")
    resumed = run("resumed", "--set", "train.iterations=4", "--resume")

    def strip(lines):
        return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in lines]

    assert strip(resumed) == strip(straight)
