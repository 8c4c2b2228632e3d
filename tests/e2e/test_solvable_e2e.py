"""End to end on the exactly solvable benchmark (``configs/solvable-gmm.toml``; docs/comparisons.md,
"The exactly solvable benchmark"): each arm that reaches its optimum, trained through the real
``Trainer`` from the benchmark's pretrained reference, passes :func:`failures`:

* its energy distance to its own optimum is at most ``tolerance`` times the noise floor (the
  distance of exact draws of the optimum at the same sample size);
* it is under a tenth of the reference's distance to that optimum (the arm moved);
* it is below the distance to the same optimum at half and at twice the arm's beta (the samples
  tell its beta from a wrong one).

``test_a_broken_arm_fails_the_check`` shows that the check can fail: the unregularized arm (a
regularizer that returns zero) fails it for every optimum, and each arm fails it when judged at
twice its beta (a wrong beta). Arms that do not reach their optimum have no case here; the
benchmark's table (``benchmarks/solvable.py``) and docs/comparisons.md give their numbers.

Seed 0, at the config's 300 iterations (a cosine learning rate from 2e-3 after 10 of warm-up,
clipping off), at 30 times the floor: a smoke test that the arm moves the right way and tells
its beta from a wrong one, not the benchmark's tolerance (20, on the upper 95% bound over 5
seeds, which no arm meets at 300 iterations: docs/comparisons.md). The arms with a case follow
the whole gradient of the objective whose optimum the case names: ``ddrl-paper`` and
``kl-in-reward-whole``. Whether each arm lands on its own estimator's fixed point is tested where
that point is computable, on the linear-Gaussian twin (tests/e2e/test_fixed_point_rl.py).

To add an arm, add one ``Case`` to ``CASES``: its ``[[compare.arms]]`` name in the config, the
metric target of its optimum (``tilt``, ``reference-tilt``, ``forward-kl``), that optimum's beta
in nats, and the tolerance it reaches.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import pytest
import torch

from ddrl_framework.evaluation.evaluator import Evaluator
from ddrl_framework.running.loader import load_file
from ddrl_framework.running.trainer import Trainer
from tests.conftest import registry

CONFIG = Path(__file__).parents[2] / "configs" / "solvable-gmm.toml"
QUICK = ("metrics=[]", "train.eval_every=0", 'train.device="cpu"')  # the test measures its own targets


@attrs.frozen
class Case:
    """An arm of the benchmark config and the optimum it must reach."""

    arm: str  # its [[compare.arms]] name in configs/solvable-gmm.toml (trained at its first beta)
    target: str  # distance-to-optimum's target: tilt, reference-tilt, forward-kl
    beta: float  # the optimum's beta, in nats (raw advantages)
    tolerance: float  # the final distance is at most tolerance x its floor


CASES = [
    # DDRL in the paper's form: data KL in nats at 1, exp-tilt at T = 0.5 -> p_data exp(r / 0.5)
    pytest.param(Case("ddrl-paper", "tilt", 0.5, 30.0), id="ddrl-paper"),
    # the KL in the reward and at every step: the path KL's whole gradient -> p_ref exp(r / 0.5)
    pytest.param(Case("kl-in-reward-whole", "reference-tilt", 0.5, 30.0), id="kl-in-reward-whole"),
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
    """``train_arm(name) -> Trained``: each arm of the config trained once per module, seed 0, for
    the config's iterations (``none``: 150, enough to leave the data far behind)."""
    runs: dict[str, Trained] = {}

    def train(name: str) -> Trained:
        if name not in runs:
            output = tmp_path_factory.mktemp("solvable")
            iterations = ["train.iterations=150"] if name == "none" else []
            file = load_file(CONFIG, [*QUICK, f"output_dir={output}", *iterations])
            arm = file.arm(name)
            trainer = Trainer(file.run(arm, (arm.betas or (None,))[0], seed=0).experiment, registry(),
                              show_progress=False)
            reference = trainer.parts.policy.reference()  # snapshot before the first update
            began = time.perf_counter()
            trainer.run()
            runs[name] = Trained(trainer, reference, time.perf_counter() - began)
        return runs[name]

    return train


def distance(target: str, beta: float, key: str):
    """A ``distance-to-optimum`` reported as ``<key>``, ``<key>_floor``, ``<key>_reward``."""
    return registry().build("metric", "distance-to-optimum", {"target": target, "beta": beta, "key": key},
                          "[[metrics]]")


def evaluate(trained: Trained, policy, metrics) -> dict[str, float]:
    """The trainer's evaluation (its fixed noise and sample count) with ``metrics`` ``[(key, metric)]``."""
    trainer, cfg = trained.trainer, trained.trainer.cfg
    evaluator = Evaluator(policy=trainer.parts.policy, sampler=trainer.parts.sampler, rewards=trainer.parts.rewards,
                          held_out=trainer.parts.data.held_out(), metrics=metrics, reference=trained.reference,
                          count=cfg.eval_samples, seed=cfg.eval_seed, device=trainer.device)
    return evaluator.evaluate(policy)


MEASURED: dict[tuple, dict[str, float]] = {}  # (run, policy, target, beta) -> values: runs and targets are fixed


def distance_at(trained: Trained, policy, target: str, beta: float) -> dict[str, float]:
    """``d``, ``d_floor``, ``d_reward`` and ``reward_mean`` of ``policy``'s evaluation samples
    against the optimum ``target`` at ``beta`` (computed once per module)."""
    key = (id(trained), id(policy), target, beta)
    if key not in MEASURED:
        MEASURED[key] = evaluate(trained, policy, [("d", distance(target, beta, "d"))])
    return MEASURED[key]


def measure(trained: Trained, target: str, beta: float) -> dict[str, float]:
    """The final policy's distance ``d`` to the optimum at ``beta`` with its floor, ``d_half`` and
    ``d_double`` to the optima at ``beta / 2`` and ``2 beta``, ``start``: the reference's ``d``."""
    policy = trained.trainer.parts.policy
    end = distance_at(trained, policy, target, beta)
    start = distance_at(trained, trained.reference, target, beta)
    return {**end, "d_half": distance_at(trained, policy, target, beta / 2)["d"],
            "d_double": distance_at(trained, policy, target, 2 * beta)["d"],
            "start": start["d"], "start_reward": start["reward_mean"]}


def failures(values: dict[str, float], tolerance: float) -> list[str]:
    """What keeps a run from its optimum (empty: it reached it), with the numbers."""
    d, floor = values["d"], values["d_floor"]
    found = []
    if d > tolerance * floor:
        found.append(f"distance {d:.5f} is {d / floor:.1f}x its floor {floor:.5f}, over {tolerance}x")
    if d > 0.1 * values["start"]:
        found.append(f"distance {d:.5f} is over a tenth of the reference's {values['start']:.5f}")
    if d >= min(values["d_half"], values["d_double"]):
        found.append(f"distance {d:.5f} is not below those to the optima at beta / 2 ({values['d_half']:.5f}) "
                     f"and 2 beta ({values['d_double']:.5f})")
    return found


def describe(name: str, case: Case, values: dict[str, float], seconds: float) -> str:
    return (f"{name} -> {case.target} at beta {case.beta:g}: distance {values['start']:.5f} -> {values['d']:.5f}, "
            f"floor {values['d_floor']:.5f} ({values['d'] / values['d_floor']:.1f}x); at beta / 2 "
            f"{values['d_half']:.5f}, at 2 beta {values['d_double']:.5f}; reward {values['start_reward']:.3f} -> "
            f"{values['reward_mean']:.3f} (the optimum's {values['d_reward']:.3f}); trained in {seconds:.0f} s")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_each_arm_reaches_its_own_optimum(case: Case, train_arm):
    trained = train_arm(case.arm)
    values = measure(trained, case.target, case.beta)
    print("\n" + describe(case.arm, case, values, trained.seconds))
    assert not failures(values, case.tolerance), failures(values, case.tolerance)


@pytest.mark.slow
def test_no_regularizer_goes_to_the_argmax_of_the_reward(train_arm):
    """``none`` maximizes E_p[r]: all mass on argmax r = (0.5, 0.5). The reward rises well past the
    data's and every regularized optimum's, and the samples leave the data."""
    trained = train_arm("none")
    metrics = [("data", distance("data", 1.0, "data")), ("tilt", distance("tilt", 0.5, "tilt"))]
    start = evaluate(trained, trained.reference, metrics[:1])
    end = evaluate(trained, trained.trainer.parts.policy, metrics)
    print(f"\nnone: reward {start['reward_mean']:.3f} -> {end['reward_mean']:.3f}; distance to the data "
          f"{start['data']:.5f} -> {end['data']:.5f} (floor {end['data_floor']:.5f}); in {trained.seconds:.0f} s")
    assert end["reward_mean"] > end["tilt_reward"] > start["reward_mean"]  # past p_data exp(r / 0.5)'s reward
    assert end["data"] > 100 * end["data_floor"] and end["data"] > 50 * start["data"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_broken_arm_fails_the_check(case: Case, train_arm):
    """The check can fail: the unregularized run (a regularizer returning zero) is far from every
    optimum, and the arm itself, judged as if its beta were twice what it is, is closer to the
    optimum at its true beta than to the one at the wrong beta."""
    unregularized = measure(train_arm("none"), case.target, case.beta)
    assert failures(unregularized, case.tolerance), describe("none", case, unregularized, 0)
    wrong = attrs.evolve(case, beta=2 * case.beta)
    wrong_beta = measure(train_arm(case.arm), wrong.target, wrong.beta)
    print("\n" + describe(case.arm, wrong, wrong_beta, 0))
    assert failures(wrong_beta, case.tolerance), describe(case.arm, wrong, wrong_beta, 0)
