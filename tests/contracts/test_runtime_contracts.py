"""A reward, regularizer or metric that breaks its contract while a run goes stops it with a
TrainingError (exit code 3) naming the component, its plugin and what was expected; the
checkpoints already written stay as they were."""

from __future__ import annotations

import json

import pytest
import torch

import ddrl_framework.registry as registry_module
from ddrl_framework.cli import main
from ddrl_framework.errors import TrainingError
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.registry import Registry, make_plugin_manager
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.trainer import Trainer

QUICK = ["train.grid_samples=0", "train.eval_samples=4", "train.checkpoint_every=1", "train.keep_checkpoints=5"]


class _Broken:
    """Brightness until call ``bad_call`` (counting from 0), then ``mode``."""

    def __init__(self, bad_call: int = 0, mode: str = "raise"):
        self.calls, self.bad_call, self.mode = 0, bad_call, mode

    def _bad(self) -> bool:
        call, self.calls = self.calls, self.calls + 1
        return call >= self.bad_call


class BrokenReward(_Broken):
    def __call__(self, samples, prompts, metadata):
        values = samples.float().flatten(1).mean(1)
        if not self._bad():
            return values
        if self.mode == "raise":
            raise RuntimeError("scorer crashed")
        return values[:, None]  # [B, 1]: the commonest slip


class BrokenRegularizer(_Broken):
    name, needs_reference, needs_reference_transition, needs_data = "broken", False, False, False

    def loss(self, context):
        mean = context.transition.mean
        if not self._bad():
            return {"loss_broken": 0.0 * mean.sum()}
        if self.mode == "raise":
            raise KeyError("beta")
        if self.mode == "detached":  # the commonest silent slip: a loss that trains nothing
            return {"loss_broken": (mean.detach() ** 2).mean() + 1.0}
        return {"loss_broken": mean.flatten(1).mean(1)}  # [B], not a scalar


class BrokenMetric(_Broken):
    needs_reference = False

    def __call__(self, context):
        if not self._bad():
            return {"fine": 1.0}
        if self.mode == "raise":
            raise ValueError("no features")
        return {"fine": float("nan")}


def _plugin(role_hook: str, name: str, factory):
    class Plugin:
        pass

    def hook(self, register):
        register(name, factory)

    hook.__name__ = role_hook
    setattr(Plugin, role_hook, hookimpl(hook))
    return Plugin()


def _registry(plugin) -> Registry:
    manager = make_plugin_manager()
    manager.register(plugin, name="broken-plugin")
    return Registry(manager)


def _trainer(tiny_config, plugin, *overrides) -> Trainer:
    config = tiny_config("none", "")
    experiment = load_experiment(config, [*QUICK, *overrides])
    return Trainer(experiment, _registry(plugin), show_progress=False)


@pytest.mark.slow
def test_a_reward_of_the_wrong_shape_stops_the_cli_with_exit_3_and_keeps_the_checkpoint(
        tiny_config, monkeypatch, capsys):
    plugin = _plugin("register_reward_models", "center-mass", lambda: BrokenReward(bad_call=2, mode="shape"))
    monkeypatch.setattr(registry_module, "load_registry", lambda **kwargs: _registry(plugin))
    config = tiny_config("none", "")
    config.write_text(config.read_text().replace('name = "brightness"', 'name = "center-mass"'))
    argv = ["train", str(config), "--quiet", *[x for o in QUICK for x in ("--set", o)]]
    assert main(argv) == 3  # call 0: the first evaluation; 1: iteration 0 (checkpointed); 2: iteration 1
    error = capsys.readouterr().err
    assert ("ddrl train: stopped: reward model 'center-mass' of plugin 'broken-plugin' returned shape [8, 1] "
            "torch.float32; expected one float per sample, shape [8]") in error and "Traceback" not in error
    checkpoints = config.parent / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "iter-000001"
    fixed = _plugin("register_reward_models", "center-mass", lambda: BrokenReward(bad_call=10**6))
    monkeypatch.setattr(registry_module, "load_registry", lambda **kwargs: _registry(fixed))
    assert main([*argv, "--resume"]) == 0  # the checkpoint is intact: the fixed plugin resumes from it
    records = (config.parent / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["iteration"] for r in records] == [0, 1, 2]


def test_a_reward_that_raises_is_named(tiny_config):
    plugin = _plugin("register_reward_models", "brightness-copy", lambda: BrokenReward(bad_call=0))
    trainer = _trainer(tiny_config, plugin, "rewards=[{name='brightness-copy'}]")
    with pytest.raises(TrainingError, match="reward model 'brightness-copy' of plugin 'broken-plugin' raised "
                       "RuntimeError: scorer crashed; the run stopped there"):
        trainer.run()


@pytest.mark.parametrize("mode,message", [
    ("raise", "regularizer 'broken' of plugin 'broken-plugin' raised in loss\\(\\): KeyError: 'beta'"),
    ("shape", "regularizer 'broken' of plugin 'broken-plugin': loss\\(\\)\\['loss_broken'\\] is shape \\[8\\] "
              "torch.float32; expected a dict of 'loss_\\*' names to scalar float tensors"),
    ("detached", "regularizer 'broken' of plugin 'broken-plugin': loss\\(\\)\\['loss_broken'\\] = [0-9.]+ carries no "
                 "gradient, so it cannot regularize anything: is it .detach\\(\\)ed"),
])
def test_a_regularizer_breaking_its_contract_stops_the_run(tiny_config, mode, message):
    plugin = _plugin("register_regularizers", "broken", lambda: BrokenRegularizer(bad_call=0, mode=mode))
    trainer = _trainer(tiny_config, plugin, "regularizer={name='broken'}")
    before = [p.detach().clone() for p in trainer.params]
    with pytest.raises(TrainingError, match=message):
        trainer.iteration(0)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params))  # no update applied


@pytest.mark.parametrize("mode,message", [
    ("raise", "metric 'fine-metric' of plugin 'broken-plugin' raised in its evaluation: ValueError: no features"),
    ("nan", "metric 'fine-metric' of plugin 'broken-plugin' returned 'fine': nan; expected a dict of names to "
            "finite floats"),
])
def test_a_metric_breaking_its_contract_stops_the_run(tiny_config, mode, message):
    plugin = _plugin("register_metrics", "fine-metric", lambda: BrokenMetric(bad_call=0, mode=mode))
    trainer = _trainer(tiny_config, plugin, "metrics=[{name='fine-metric'}]")
    with pytest.raises(TrainingError, match=message):
        trainer.evaluate(0)


def test_a_well_behaved_plugin_passes_the_guards(tiny_config):
    plugin = _plugin("register_metrics", "fine-metric", lambda: BrokenMetric(bad_call=10**6))
    trainer = _trainer(tiny_config, plugin, "metrics=[{name='fine-metric'}]")
    assert trainer.evaluate(0)["fine"] == 1.0
