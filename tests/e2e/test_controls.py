"""The controls of configs/controls-brightness.toml at a small budget: seeds pair across arms,
identical arms under two names give the same numbers, a twin arm with independent noise is not
reported different, and a planted handicap (a reverse-KL beta 30 times larger) is reported
different at the shipped seed count (3), both in the Holm-corrected primary family."""

import json
from pathlib import Path

import pytest

from ddrl_framework.cli import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "controls-brightness.toml"
SMALL = ["policy.block_out_channels=[8, 16]", "policy.norm_num_groups=4", "sampler.denoising_steps=4",
         "pretrain.optimizer_steps=30", "pretrain.batch_size=32", "train.iterations=4", "train.groups=2",
         "train.group_size=4", "train.learning_rate=1e-3", "train.eval_every=4", "train.eval_samples=16",
         "train.grid_samples=0", "train.checkpoint_every=0", "train.device=cpu", "metrics=[]",
         "compare.evaluation_repeats=2"]


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controls") / "out"
    overrides = [f"--set={o}" for o in [*SMALL, f"output_dir={folder}"]]
    assert main(["compare", str(CONFIG), "--quiet", *overrides]) == 0
    verdicts = json.loads((folder / "verdicts.json").read_text())
    return folder, {(v["a"], v["b"], v["view"], v["metric"]): v for v in verdicts}


def records(folder, run, name):
    return [json.loads(line) for line in (folder / "runs" / run / name).read_text().splitlines()]


@pytest.mark.slow
def test_seeds_pair_across_arms(controls):
    """Same seed: the same data order and rollout noise (so the same first rollout's rewards);
    every run of every seed: the same evaluation noise (so the same evaluation of the reference)."""
    folder, _ = controls
    arms = ["reverse-kl", "reverse-kl-renamed", "reverse-kl-handicapped"]  # the twin's seeds are offset
    first_evals = {records(folder, f"{arm}-seed{s}", "eval.jsonl")[0]["reward_mean"]
                   for arm in [*arms, "reverse-kl-twin"] for s in range(3)}
    assert len(first_evals) == 1
    for seed in range(3):
        first = {records(folder, f"{arm}-seed{seed}", "metrics.jsonl")[0]["reward_mean"] for arm in arms}
        assert len(first) == 1
    assert len({records(folder, f"reverse-kl-seed{s}", "metrics.jsonl")[0]["reward_mean"] for s in range(3)}) == 3


@pytest.mark.slow
def test_negative_control_a_twin_with_independent_noise_is_not_different(controls):
    """The twin's runs differ from reverse-kl's (other seeds), yet no corrected verdict says
    "better"; the same arm under another name is identical number for number (the pairing)."""
    folder, verdicts = controls
    twin = verdicts[("reverse-kl", "reverse-kl-twin", "equal iterations", "reward_mean")]
    assert twin["primary"] and twin["interval"]["n"] == 3 and twin["interval"]["sd"] > 0
    assert twin["verdict"] not in ("A better", "B better"), twin
    assert records(folder, "reverse-kl-twin-seed0", "metrics.jsonl") != records(folder, "reverse-kl-seed0", "metrics.jsonl")
    same = [v for key, v in verdicts.items() if key[:2] == ("reverse-kl", "reverse-kl-renamed")]
    assert same and all(not v["primary"] and v["interval"]["mean"] == 0 for v in same)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    for seed in range(3):
        a, b = (records(folder, f"{arm}-seed{seed}", "metrics.jsonl") for arm in ("reverse-kl", "reverse-kl-renamed"))
        assert strip(a) == strip(b)


@pytest.mark.slow
def test_positive_control_a_planted_handicap_is_found(controls):
    folder, verdicts = controls
    reward = verdicts[("reverse-kl", "reverse-kl-handicapped", "equal iterations", "reward_mean")]
    assert reward["interval"]["n"] == 3
    assert reward["verdict"] == "A better", reward
    report = (folder / "report.md").read_text()
    assert "| reverse-kl | reverse-kl-handicapped | reward_mean (higher) | equal iterations, 4 |" in report
    assert "**A better** (reverse-kl)" in report
