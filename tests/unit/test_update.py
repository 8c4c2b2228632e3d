"""The update of one iteration (running/update.py): a regularizer sees only what it declares, an
optional once-per-update loss is added once per optimizer step, and the windows of trained steps
follow ``train.denoising_steps_per_update``."""

from __future__ import annotations

import json

import torch

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.registry import Registry, make_plugin_manager
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.trainer import Trainer


class _Recorder:
    """A regularizer that records what each context held, with a weight penalty once per update."""

    name = "recorder"

    def __init__(self, needs_reference: bool, needs_reference_transition: bool, needs_data: bool):
        self.needs_reference = needs_reference
        self.needs_reference_transition = needs_reference_transition
        self.needs_data = needs_data
        self.step_contexts, self.update_contexts = [], []

    def loss(self, context):
        self.step_contexts.append(context)
        return {"loss_recorder": 0.0 * context.transition.mean.sum()}

    def update_loss(self, context):
        self.update_contexts.append(context)
        weights = torch.cat([p.flatten() for p in context.policy.trainable_parameters()])
        return {"loss_recorder_weights": 1e-3 * weights.square().sum()}


def _trainer(tiny_config, regularizer: _Recorder, *overrides: str) -> Trainer:
    class Plugin:
        @hookimpl
        def register_regularizers(self, register):
            register("recorder", lambda: regularizer)

    manager = make_plugin_manager()
    manager.register(Plugin(), name="recorder-plugin")
    config = tiny_config("recorder", "")
    overrides = ("train.grid_samples=0", "train.eval_every=0", "train.iterations=1",
                 "train.trained_denoising_steps=[0, 1, 2, 3]", *overrides)
    return Trainer(load_experiment(config, list(overrides)), Registry(manager), show_progress=False)


def test_the_context_holds_only_what_the_regularizer_declares(tiny_config):
    recorder = _Recorder(needs_reference=True, needs_reference_transition=False, needs_data=False)
    _trainer(tiny_config, recorder).run()
    assert len(recorder.step_contexts) == 4  # the sampler's 4 steps, one inner epoch
    for context in recorder.step_contexts:
        assert context.reference is not None and context.reference is not context.policy
        assert context.reference_transition is None and context.data is None
    assert [c.is_first_trained_step for c in recorder.step_contexts] == [True, False, False, False]


def test_the_reference_transition_and_data_come_when_declared(tiny_config):
    recorder = _Recorder(needs_reference=False, needs_reference_transition=True, needs_data=True)
    _trainer(tiny_config, recorder).run()
    for context in recorder.step_contexts:
        assert context.reference is None
        assert context.reference_transition.mean.shape == context.transition.mean.shape
        assert context.data is not None and context.data.x0 is not None


def test_the_update_loss_comes_once_per_optimizer_step(tiny_config):
    recorder = _Recorder(needs_reference=False, needs_reference_transition=False, needs_data=False)
    trainer = _trainer(tiny_config, recorder, "train.denoising_steps_per_update=3", "train.inner_epochs=2")
    trainer.run()
    # 4 trained steps in windows [0, 1, 2] and [3]: 2 optimizer steps per epoch, 2 epochs
    assert len(recorder.update_contexts) == 4 and len(recorder.step_contexts) == 8
    assert all(c.reference is None and c.data is None for c in recorder.update_contexts)
    record = json.loads((trainer.output / "metrics.jsonl").read_text().splitlines()[0])
    assert record["loss_recorder_weights"] > 0 and record["loss_recorder"] == 0.0


class _NoUpdateLoss(_Recorder):
    update_loss = None  # the trainer skips an update_loss that is None


def test_the_once_per_update_loss_reaches_the_gradients(tiny_config):
    """Two runs that differ only in the weight penalty end with different weights."""
    weights = []
    for name, recorder in (("with", _Recorder(False, False, False)), ("without", _NoUpdateLoss(False, False, False))):
        trainer = _trainer(tiny_config, recorder, f"output_dir={tiny_config().parent / name}")
        trainer.run()
        weights.append(torch.cat([p.detach().flatten() for p in trainer.params]))
    assert not torch.equal(*weights)


def test_each_iteration_logs_the_fraction_of_its_clipped_optimizer_steps(tiny_config):
    """``grad_clipped``: 1 when every optimizer step's norm exceeds a tiny max_grad_norm, 0 with
    clipping off; the report warns about a setting clipped in most iterations."""
    from ddrl_framework.comparison.report import clipping_note

    fractions = {}
    for limit in ("1e-9", "0"):
        recorder = _Recorder(needs_reference=False, needs_reference_transition=False, needs_data=False)
        trainer = _trainer(tiny_config, recorder, f"train.max_grad_norm={limit}", "train.denoising_steps_per_update=2",
                           f"output_dir={tiny_config().parent / ('clip' + limit)}")
        trainer.run()
        fractions[limit] = json.loads((trainer.output / "metrics.jsonl").read_text().splitlines()[0])["grad_clipped"]
    assert fractions == {"1e-9": 1.0, "0": 0.0}
    clipped = {"none": [{"train": [{"grad_clipped": 1.0}, {"grad_clipped": 0.5}]}],
               "reverse-kl β=0.1": [{"train": [{"grad_clipped": 0.0}, {"grad_clipped": 0.5}]}]}
    note = "\n".join(clipping_note(clipped))
    assert "**none**: clipped in 75%" in note and "reverse-kl" not in note
    assert clipping_note({"none": [{"train": [{"grad_clipped": 0.5}]}]}) == []
