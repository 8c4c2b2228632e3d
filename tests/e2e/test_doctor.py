"""``ddrl doctor``: passes on every backbone's tiny config, and catches the classic breakages."""

import attrs
import pytest
import torch

from ddrl_framework.cli import main
from ddrl_framework.registry import load_registry
from ddrl_framework.running.components import build_components
from ddrl_framework.running.doctor import (
    check_ratio,
    check_scheduler_match,
    make_probe,
    run_checks,
)
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.pretrain import pretrain_if_needed
from tests.conftest import CONFIGS


@pytest.mark.slow
@pytest.mark.parametrize("config,extra", [
    ("sd-tiny.toml", []), ("sd3-tiny.toml", ["--set", "policy.lora_rank=4"]), ("wan-tiny.toml", []),
    ("flux-tiny.toml", ["--set", "policy.lora_rank=4"]), ("wan22-tiny.toml", ["--set", "policy.lora_rank=2"]),
    ("qwen-image-tiny.toml", []), ("flux2-klein-tiny.toml", []),
])
def test_doctor_passes_on_the_tiny_configs(config, extra, capsys):
    assert main(["doctor", str(CONFIGS / config), "--quiet", *extra]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and out.count("PASS") == 8
    assert "zero-noise rollout == pipeline.__call__" in out  # the pipeline-fidelity row


def test_in_bf16_the_fidelity_row_reports_without_judging(capsys):
    """bf16 rounds the two sides differently (up to 5.5e-2 of the std on the tiny configs): the row
    shows the gaps and how to get the exact check; the pipeline runs under the policy's autocast."""
    assert main(["doctor", str(CONFIGS / "sd3-tiny.toml"), "--quiet", "--set", "policy.mixed_precision=bf16"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "pipeline.__call__" in line)
    assert "in bf16: not judged" in row and "--set policy.mixed_precision=no" in row and row.endswith("SKIP")


def test_doctor_passes_on_digits_and_fails_without_noise(tiny_config, capsys):
    config = tiny_config()
    assert main(["doctor", str(config), "--quiet"]) == 0
    assert main(["doctor", str(config), "--quiet", "--set", "sampler.eta=0.0"]) == 1
    out = capsys.readouterr().out
    assert "no stochastic step" in out and "check(s) failed: log-probs finite, sane scale" in out


class _Jittery:
    """A policy whose output changes from call to call (as dropout in train mode would)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, x_t, t, cond):
        return self.inner.predict(x_t, t, cond) + 1e-3 * torch.randn_like(x_t)


class _OffByOne:
    """A sampler whose zero-noise step is not the scheduler's (a timestep off by one)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def deterministic(self):
        return _OffByOneDeterministic(self.inner.deterministic())


class _OffByOneDeterministic(_OffByOne):
    def transition(self, policy, x_k, k, cond):
        return self.inner.transition(policy, x_k, min(k + 1, self.inner.num_steps - 1), cond)


def _probe(tiny_config):
    experiment, registry = load_experiment(tiny_config()), load_registry()
    pretrain_if_needed(experiment, registry, show_progress=False)
    parts = build_components(experiment, registry, torch.device("cpu"), show_progress=False)
    return make_probe(parts, 4, 0, torch.device("cpu"))


def test_doctor_catches_a_ratio_that_is_not_one(tiny_config):
    probe = _probe(tiny_config)
    jittery = attrs.evolve(probe, parts=attrs.evolve(probe.parts, policy=_Jittery(probe.parts.policy)))
    assert check_ratio(probe).status == "PASS"
    assert check_ratio(jittery).status == "FAIL"


def test_doctor_catches_a_sampler_that_does_not_match_its_scheduler(tiny_config):
    probe = _probe(tiny_config)
    broken = attrs.evolve(probe, parts=attrs.evolve(probe.parts, sampler=_OffByOne(probe.parts.sampler)))
    assert check_scheduler_match(probe).status == "PASS"
    assert check_scheduler_match(broken).status == "FAIL"
    assert all(r.status in ("PASS", "FAIL", "SKIP") for r in run_checks(broken))
