"""Out-of-sample floors: drawn from one half of the held-out digits, scored against the other."""

import torch

from ddrl_framework.comparison.floors import halves, measure_floors, target_floor
from ddrl_framework.evaluation.evaluator import Evaluator
from ddrl_framework.evaluation.scoring import WeightedReward
from ddrl_framework.running.config import Target
from ddrl_framework.testing.fakes import FakePolicy, FakeSampler
from ddrl_plugins.data.sklearn_digits import SklearnDigits
from ddrl_plugins.metrics.digits_metrics import FrechetDistance
from ddrl_plugins.rewards.brightness import Brightness


def evaluator(count=256):
    reward = WeightedReward(key="brightness", name="brightness", weight=1.0, model=Brightness())
    return Evaluator(policy=FakePolicy(), sampler=FakeSampler(), rewards=[reward],
                     held_out=SklearnDigits().held_out(), metrics=[("fd", FrechetDistance())],
                     reference=None, count=count, seed=0, device=torch.device("cpu"))


def test_halves_are_disjoint_and_cover_everything():
    first, second = halves(359, seed=3)
    assert len(first) == 179 and len(second) == 180
    assert sorted(torch.cat([first, second]).tolist()) == list(range(359))


def test_the_out_of_sample_floor_is_above_the_in_sample_one():
    """Resampling the very images an FD is scored against flatters it (issue 12, item 2)."""
    ev = evaluator()
    in_sample = [ev.evaluate_data(None, seed=s)["fd"] for s in range(3)]
    floor = target_floor(ev, "none", 1.0, splits=3)
    assert floor["splits"] == 3 and floor["spread"]["fd"] > 0
    assert floor["values"]["fd"] > 1.5 * max(in_sample)


def test_a_tilted_target_is_scored_against_the_other_half_reweighted():
    ev = evaluator()
    floors = measure_floors(ev, [Target(name="data"), Target(name="bright", weighting="exp-tilt",
                                                             temperature=0.02)], splits=2)
    assert floors["bright"]["values"]["reward_mean"] > floors["data"]["values"]["reward_mean"] + 0.02
    assert floors["bright"]["weighting"] == "exp-tilt" and set(floors["bright"]["spread"]) >= {"fd", "reward_mean"}
