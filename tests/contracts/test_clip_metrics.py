"""Metrics in open_clip feature space (the bundled tiny random ddrl-tiny-clip: nothing downloads)
and the held-out reward."""

import attrs
import pytest
import torch

from ddrl_framework.errors import UserError
from ddrl_framework.evaluation.evaluator import repeat_to
from ddrl_framework.testing import MetricContract, make_eval_context
from ddrl_framework.testing.fakes import FakePolicy, FakeSampler, fake_batch
from tests.conftest import build, registry

TINY = {"model": "ddrl-tiny-clip", "pretrained": ""}


def context_of(samples, prompts=None, held_out=None, **kwargs):
    context = make_eval_context(FakePolicy(), FakeSampler(), count=4, **kwargs)
    prompts = tuple(prompts or (f"p{i}" for i in range(samples.shape[0])))
    changes = {"samples": samples, "prompts": prompts}
    if held_out is not None:
        changes["held_out"] = attrs.evolve(context.held_out, x0=held_out, prompts=("h",) * len(held_out))
    return attrs.evolve(context, **changes)


def images(n, seed):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_fd_clip_is_zero_against_the_same_images_and_grows_with_a_shift():
    data = images(12, 0)
    metric = build("metric", "clip-frechet-distance", **TINY)
    same = metric(context_of(data, held_out=data))["fd_clip"]
    shifted = metric(context_of((data * 0.3 + 0.7), held_out=data))["fd_clip"]
    assert abs(same) < 1e-6 and shifted > 1e-4


def test_random_tiny_weights_are_the_same_in_every_process():
    from ddrl_plugins.shared.open_clip_models import load_open_clip

    first = load_open_clip("ddrl-tiny-clip", "", None)[0]
    load_open_clip.cache_clear()
    torch.manual_seed(123)  # the global seed must not matter
    again = load_open_clip("ddrl-tiny-clip", "", None)[0]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_fd_clip_without_data_images_says_to_use_reference_samples():
    context = context_of(images(4, 0))
    context = attrs.evolve(context, held_out=attrs.evolve(context.held_out, x0=None))
    with pytest.raises(ValueError, match="reference-samples"):
        build("metric", "clip-frechet-distance", **TINY)(context)


def test_fd_clip_against_reference_samples():
    from ddrl_framework.testing.fakes import perturb
    from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

    policy, sampler = FakePolicy(), DdimSdeSampler(denoising_steps=3, eta=0.0)  # deterministic
    metric = build("metric", "clip-frechet-distance", against="reference-samples", **TINY)
    assert metric.needs_reference
    same = metric(make_eval_context(policy, sampler, count=8, reference=policy.reference()))["fd_clip"]
    moved = FakePolicy()
    perturb(moved, scale=2.0)
    other = metric(make_eval_context(moved, sampler, count=8, reference=policy.reference()))["fd_clip"]
    assert abs(same) < 1e-6 and other > 1e-4


def videos(n, frames, seed, still=False):
    x = torch.rand(n, 3, frames, 16, 16, generator=torch.Generator().manual_seed(seed))
    return x[:, :, :1].expand_as(x).clone() if still else x


def test_video_fd_has_a_frame_difference_variant():
    metric = build("metric", "clip-frechet-distance", **TINY)
    data = videos(6, 3, 0)
    values = metric(context_of(data, held_out=data))
    assert set(values) == {"fd_clip", "fd_clip_frame_diff"} and abs(values["fd_clip_frame_diff"]) < 1e-6
    # still videos: the same frames, so per-frame FD is unchanged, but no motion at all
    still = metric(context_of(videos(6, 3, 1, still=True), held_out=data))
    assert still["fd_clip_frame_diff"] > 1e-4


def test_per_prompt_diversity_is_zero_for_copies_of_one_sample_per_prompt():
    a, b = images(1, 0), images(1, 1)
    copies = torch.cat([a, a, b, b])
    values = build("metric", "clip-diversity", **TINY)(context_of(copies, prompts=["x", "x", "y", "y"]))
    assert values["clip_prompt_diversity"] == pytest.approx(0, abs=1e-6)
    assert values["clip_diversity"] > 1e-3
    varied = build("metric", "clip-diversity", **TINY)(context_of(images(4, 2), prompts=["x", "x", "y", "y"]))
    assert varied["clip_prompt_diversity"] > 1e-3


def test_diversity_needs_several_samples_per_prompt():
    with pytest.raises(ValueError, match="eval_samples_per_prompt"):
        build("metric", "clip-diversity", **TINY)(context_of(images(3, 0), prompts=["x", "y", "z"]))


def test_the_evaluator_lays_out_samples_per_prompt():
    batch = attrs.evolve(fake_batch(5), prompts=("a", "a", "b", "c", "a"), labels=None)
    assert repeat_to(batch, 8, 2).prompts == ("a", "a", "b", "b", "c", "c", "a", "a")
    assert repeat_to(batch, 5, 3).prompts == ("a", "a", "a", "b", "b")
    assert repeat_to(batch, 3).prompts == ("a", "a", "b")  # one per prompt: as before
    labelled = attrs.evolve(batch, prompts=("",) * 5, labels=torch.tensor([3, 3, 4, 5, 3]))
    assert repeat_to(labelled, 4, 2).labels.tolist() == [3, 3, 4, 4]


def test_temporal_consistency_is_one_for_a_still_video():
    metric = build("metric", "clip-temporal-consistency", **TINY)
    assert metric(context_of(videos(2, 3, 0, still=True)))["clip_temporal_consistency"] == pytest.approx(1.0)
    assert metric(context_of(videos(2, 3, 0)))["clip_temporal_consistency"] < 0.9999


def test_held_out_reward_is_the_reward_models_mean():
    samples = images(4, 0)
    metric = build("metric", "held-out-reward", reward={"name": "brightness"})
    values = metric(context_of(samples))
    assert values["heldout_brightness"] == pytest.approx(float(samples.mean()), rel=1e-5)
    keyed = build("metric", "held-out-reward", reward={"name": "brightness"}, key="light")
    assert "heldout_light" in keyed(context_of(samples))


def test_held_out_reward_table_is_checked_before_any_work():
    with pytest.raises(UserError, match=r"\[\[metrics\]\] #2.reward.*unknown reward model 'brightnes'.*brightness"):
        registry().check("metric", "held-out-reward", {"reward": {"name": "brightnes"}}, "[[metrics]] #2")
    with pytest.raises(UserError, match="unknown option 'scale'"):
        registry().check("metric", "held-out-reward", {"reward": {"name": "brightness", "scale": 2}}, "[[metrics]] #2")


class TestClipFrechetContract(MetricContract):
    def make_metric(self):
        return build("metric", "clip-frechet-distance", **TINY)


class TestClipDiversityContract(MetricContract):
    def make_metric(self):
        return build("metric", "clip-diversity", **TINY)

    def make_context(self):
        return context_of(images(4, 0), prompts=["x", "x", "y", "y"])


class TestClipTemporalContract(MetricContract):
    def make_metric(self):
        return build("metric", "clip-temporal-consistency", **TINY)

    def make_context(self):
        return context_of(videos(2, 3, 0))


class TestHeldOutRewardContract(MetricContract):
    def metric_options(self):
        return {"reward": {"name": "jpeg-compressibility"}}

    def make_metric(self):
        return build("metric", "held-out-reward", **self.metric_options())
