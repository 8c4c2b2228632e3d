"""End to end on the exactly solvable benchmark (``configs/solvable-gmm.toml``; docs/comparisons.md):
each arm, trained through the real ``Trainer`` from the benchmark's pretrained reference, ends
near its own optimum: its energy distance to it is within ``tolerance`` times the noise floor
(the distance of exact draws of the optimum at the same sample size), and a tenth of what it was
at the start.

To add an arm (e.g. a regularizer from another branch), add one ``case(...)`` line to ``CASES``
with its ``[regularizer]`` table, its ``set`` overrides, its beta, the metric target of its
optimum (``data``, ``tilt``, ``reference-tilt``, ``forward-kl``) at the beta in the objective's
units, and the tolerance it reaches.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import pytest
import torch

from ddrl_framework.evaluation.evaluator import Evaluator
from ddrl_framework.registry import load_registry
from ddrl_framework.running.config import Arm
from ddrl_framework.running.loader import load_file
from ddrl_framework.running.trainer import Trainer

CONFIG = Path(__file__).parents[1] / "configs" / "solvable-gmm.toml"
REGISTRY = load_registry()
QUICK = ("metrics=[]", "train.eval_every=0", 'train.device="cpu"')  # the test measures its own targets


@attrs.frozen
class Case:
    """An arm of the benchmark and the optimum it must reach."""

    regularizer: dict  # the [regularizer] table, without beta
    beta: float | None  # the arm's beta (None: none)
    target: str  # distance-to-optimum's target: data, tilt, reference-tilt, forward-kl
    target_beta: float  # the optimum's beta, in the objective's units (raw advantages)
    tolerance: float  # the final distance is at most tolerance x its floor
    set: tuple[str, ...] = ()  # the arm's own overrides (e.g. train.advantage_transform=...)
    iterations: int = 300


def case(regularizer, beta, target, target_beta, tolerance, *, set=(), iterations=300, marks=(), id=None):
    return pytest.param(Case(regularizer, beta, target, target_beta, tolerance, tuple(set), iterations),
                        marks=marks, id=id)


PER_STEP_KL = ("the per-step reverse KL treats the sampled states as fixed, only part of the gradient "
               "of the path KL (Tang & Munos, arXiv 2506.09477): at beta 0.5 it settles on "
               "p_ref exp(r / 0.8), a weaker tilt than its nominal optimum p_ref exp(r / 0.5)")

CASES = [
    # reverse KL at beta 0.5 reaches an exponential tilt of its reference, at temperature 0.8 ...
    case({"name": "reverse-kl"}, 0.5, "reference-tilt", 0.8, 4.0, id="reverse-kl-0.5-reaches-tilt-at-0.8"),
    # ... and not its nominal optimum p_ref exp(r / 0.5): a finding, kept visible (strict)
    case({"name": "reverse-kl"}, 0.5, "reference-tilt", 0.5, 4.0, id="reverse-kl-0.5-nominal-optimum",
         marks=pytest.mark.xfail(strict=True, reason=PER_STEP_KL)),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The MLP is tiny: one thread is faster than two that share a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@attrs.frozen
class Trained:
    trainer: Trainer
    reference: object  # the pretrained policy, before any update
    seconds: float


@pytest.fixture(scope="module")
def train_arm(tmp_path_factory):
    """``train_arm(case) -> Trained``: each arm trained once per module (cases share runs)."""
    runs: dict[str, Trained] = {}

    def train(c: Case) -> Trained:
        key = repr((c.regularizer, c.beta, c.set, c.iterations))
        if key not in runs:
            output = tmp_path_factory.mktemp("solvable")
            file = load_file(CONFIG, [*QUICK, f"output_dir={output}", f"train.iterations={c.iterations}"])
            arm = Arm(name=c.regularizer["name"], regularizer=c.regularizer, set=c.set)
            trainer = Trainer(file.run(arm, c.beta, seed=0).experiment, REGISTRY, show_progress=False)
            reference = trainer.parts.policy.reference()  # snapshot before the first update
            began = time.perf_counter()
            trainer.run()
            runs[key] = Trained(trainer, reference, time.perf_counter() - began)
        return runs[key]

    return train


def distance(target: str, beta: float):
    """A ``distance-to-optimum`` reported as ``d``, ``d_floor``, ``d_reward`` (it caches its target)."""
    return REGISTRY.build("metric", "distance-to-optimum", {"target": target, "beta": beta, "key": "d"},
                          "[[metrics]]")


def evaluate(trained: Trained, policy, metric) -> dict[str, float]:
    """The trainer's evaluation (its fixed noise and sample count) with one metric."""
    trainer, cfg = trained.trainer, trained.trainer.cfg
    evaluator = Evaluator(policy=trainer.parts.policy, sampler=trainer.parts.sampler, rewards=trainer.parts.rewards,
                          held_out=trainer.parts.data.held_out(), metrics=[("d", metric)],
                          reference=trained.reference, count=cfg.eval_samples, seed=cfg.eval_seed,
                          device=trainer.device)
    return evaluator.evaluate(policy)


@pytest.mark.slow
@pytest.mark.parametrize("arm", CASES)
def test_each_arm_reaches_its_own_optimum(arm: Case, train_arm):
    trained = train_arm(arm)
    metric = distance(arm.target, arm.target_beta)
    start = evaluate(trained, trained.reference, metric)
    end = evaluate(trained, trained.trainer.parts.policy, metric)
    print(f"\n{arm.regularizer['name']} beta {arm.beta}: {arm.target} at {arm.target_beta}: distance "
          f"{start['d']:.5f} -> {end['d']:.5f}, floor {end['d_floor']:.5f} ({end['d'] / end['d_floor']:.1f}x), "
          f"reward {start['reward_mean']:.3f} -> {end['reward_mean']:.3f} (target's {end['d_reward']:.3f}), "
          f"{arm.iterations} iterations in {trained.seconds:.0f} s")
    assert end["d"] < 0.1 * start["d"], "the arm did not move towards its optimum"
    assert end["d"] <= arm.tolerance * end["d_floor"], (
        f"distance {end['d']:.5f} is {end['d'] / end['d_floor']:.1f}x its floor {end['d_floor']:.5f}; "
        f"expected at most {arm.tolerance}x")


@pytest.mark.slow
def test_no_regularizer_goes_to_the_argmax_of_the_reward(train_arm):
    """``none`` maximizes E_p[r]: all mass on argmax r = (0.5, 0.5). The reward rises well past the
    data's and every regularized optimum's, and the samples leave the data."""
    trained = train_arm(Case({"name": "none"}, None, "data", 1.0, 0.0, iterations=150))
    to_data = distance("data", 1.0)
    start = evaluate(trained, trained.reference, to_data)
    end = evaluate(trained, trained.trainer.parts.policy, to_data)
    tilt = evaluate(trained, trained.trainer.parts.policy, distance("tilt", 0.5))
    print(f"\nnone: reward {start['reward_mean']:.3f} -> {end['reward_mean']:.3f}; distance to the data "
          f"{start['d']:.5f} -> {end['d']:.5f} (floor {end['d_floor']:.5f}); 150 iterations in {trained.seconds:.0f} s")
    assert end["reward_mean"] > tilt["d_reward"] > start["reward_mean"]  # past p_data exp(r / 0.5)'s reward
    assert end["d"] > 100 * end["d_floor"] and end["d"] > 50 * start["d"]
