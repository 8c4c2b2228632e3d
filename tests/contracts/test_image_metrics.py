"""Pixel statistics that expose reward hacks (image-statistics, video-statistics): each against a
value computed by hand on a synthetic image, and their metric contracts."""

import math

import attrs
import numpy as np
import pytest
import torch

from ddrl_framework.testing import MetricContract, make_eval_context
from ddrl_framework.testing.fakes import FakePolicy, FakeSampler
from tests.conftest import build, registry


def context_of(samples, prompts=None):
    context = make_eval_context(FakePolicy(), FakeSampler(), count=4)
    prompts = prompts or tuple(f"p{i}" for i in range(samples.shape[0]))
    return attrs.evolve(context, samples=samples, prompts=tuple(prompts))


def stats(images):
    return build("metric", "image-statistics")(context_of(images))


def filled(*color, size=8):
    return torch.tensor(color, dtype=torch.float32).view(1, -1, 1, 1).expand(1, -1, size, size).clone()


def checkerboard(size=8):
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((x + y) % 2).float().view(1, 1, size, size)


def test_a_gray_image_has_no_saturation_colorfulness_contrast_or_high_frequencies():
    values = stats(filled(0.5, 0.5, 0.5))
    assert values["saturation"] == 0 and values["colorfulness"] == 0
    assert values["contrast"] == 0 and values["hf_energy"] == 0
    assert values["exposure_mean"] == pytest.approx(0.5)
    assert values["exposure_clipped_high"] == 0 and values["exposure_clipped_low"] == 0


def test_pure_red_by_hand():
    values = stats(filled(1.0, 0.0, 0.0))
    assert values["saturation"] == pytest.approx(1.0)
    # rg = 255, yb = 127.5, no spread: M = 0.3 * sqrt(255^2 + 127.5^2)
    assert values["colorfulness"] == pytest.approx(0.3 * math.hypot(255, 127.5))
    assert values["exposure_mean"] == pytest.approx(0.299)


def test_colorfulness_matches_the_papers_formula_on_random_pixels():
    image = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    r, g, b = (image[0].double().numpy() * 255)
    rg, yb = r - g, 0.5 * (r + g) - b
    expected = math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    assert stats(image)["colorfulness"] == pytest.approx(expected, rel=1e-9)


def test_a_checkerboard_is_all_high_frequency_and_clipped_at_both_ends():
    values = stats(checkerboard())
    assert values["hf_energy"] == pytest.approx(1.0)
    assert values["contrast"] == pytest.approx(0.5)
    assert values["exposure_clipped_high"] == pytest.approx(0.5)
    assert values["exposure_clipped_low"] == pytest.approx(0.5)


def test_a_slow_cosine_has_no_high_frequency_energy():
    x = torch.arange(32, dtype=torch.float64)
    image = (0.5 + 0.4 * torch.cos(2 * math.pi * x / 32)).view(1, 1, 1, 32).expand(1, 1, 32, 32).float()
    values = stats(image)
    assert values["hf_energy"] < 1e-6
    assert values["contrast"] == pytest.approx(0.4 / math.sqrt(2), rel=1e-3)


def test_overexposure_raises_the_clipped_high_fraction():
    image = torch.full((2, 3, 8, 8), 0.5)
    image[0, :, :4] = 1.0  # half of one image blown out: a quarter of all pixels
    assert stats(image)["exposure_clipped_high"] == pytest.approx(0.25)


def test_videos_are_measured_over_their_frames():
    video = filled(1.0, 0.0, 0.0).unsqueeze(2).expand(1, 3, 4, 8, 8)
    assert stats(video)["saturation"] == pytest.approx(1.0)


def alternating_video(low=0.2, high=0.8, frames=4):
    levels = torch.tensor([low if t % 2 == 0 else high for t in range(frames)])
    return levels.view(1, 1, frames, 1, 1).expand(2, 3, frames, 4, 4).clone()


def test_flicker_by_hand():
    values = build("metric", "video-statistics")(context_of(alternating_video()))
    assert values["flicker"] == pytest.approx(0.6)
    assert values["frame_difference"] == pytest.approx(0.6)
    still = build("metric", "video-statistics")(context_of(alternating_video(0.3, 0.3)))
    assert still == {"flicker": 0.0, "frame_difference": 0.0}


def test_video_statistics_refuse_images():
    with pytest.raises(ValueError, match="image-statistics"):
        build("metric", "video-statistics")(context_of(torch.rand(2, 3, 4, 4)))


def test_options_are_checked_before_any_work():
    from ddrl_framework.errors import UserError

    with pytest.raises(UserError, match="cutoff"):
        registry().check("metric", "image-statistics", {"cutoff": 0.7}, "[[metrics]] #1")


def test_numpy_luminance_agrees():
    image = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    y = np.tensordot([0.299, 0.587, 0.114], image.double().numpy(), axes=([0], [1]))
    assert stats(image)["exposure_mean"] == pytest.approx(float(y.mean()), rel=1e-9)


class TestImageStatisticsContract(MetricContract):
    def make_metric(self):
        return build("metric", "image-statistics")


class TestVideoStatisticsContract(MetricContract):
    def make_metric(self):
        return build("metric", "video-statistics")

    def make_context(self):
        videos = torch.rand(4, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        return context_of(videos)
