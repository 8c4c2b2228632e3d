"""train.lr_schedule and train.lr_warmup_iterations: the rate of every iteration, and that the
trainer runs each update at it."""

import math

import pytest

from ddrl_framework.running.config import TrainConfig
from ddrl_framework.running.schedule import learning_rate


def rates(**fields) -> list[float]:
    cfg = TrainConfig(**fields)
    return [learning_rate(cfg, i) for i in range(cfg.iterations)]


def test_constant_is_the_default_and_ignores_the_iteration():
    assert rates(iterations=5, learning_rate=0.1) == [0.1] * 5


def test_warmup_rises_linearly_to_the_peak_then_holds():
    assert rates(iterations=6, learning_rate=1.0, lr_warmup_iterations=4) == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_cosine_starts_at_the_peak_after_warmup_and_reaches_zero_at_the_end():
    got = rates(iterations=12, learning_rate=2.0, lr_warmup_iterations=2, lr_schedule="cosine")
    assert got[:2] == pytest.approx([1.0, 2.0])
    expected = [2.0 * 0.5 * (1 + math.cos(math.pi * (i - 2) / 10)) for i in range(2, 12)]
    assert got[2:] == pytest.approx(expected)
    assert got[2] == pytest.approx(2.0) and got[-1] < 0.06
    assert all(a >= b for a, b in zip(got[2:], got[3:]))


def test_the_trainer_runs_each_iteration_at_its_scheduled_rate_and_logs_it(tiny_config):
    from ddrl_framework.cli import main
    import json

    config = tiny_config()
    sets = ["train.iterations=4", "train.learning_rate=0.004", "train.lr_warmup_iterations=2",
            "train.lr_schedule=cosine", "train.eval_every=0"]
    assert main(["train", str(config), "--quiet", *[a for s in sets for a in ("--set", s)]]) == 0
    lines = (config.parent / "run" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line)["learning_rate"] for line in lines]
    cfg = TrainConfig(iterations=4, learning_rate=0.004, lr_warmup_iterations=2, lr_schedule="cosine")
    assert logged == pytest.approx([learning_rate(cfg, i) for i in range(4)])
    assert logged == pytest.approx([0.002, 0.004, 0.004, 0.002])  # 0 would be iteration 4, never run
