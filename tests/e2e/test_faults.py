"""Faults: non-finite rewards and losses ("stop" or "skip"), a reward model that raises, and a full
disk while a checkpoint is written. Nothing already saved is lost."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ddrl_framework.cli import main
from ddrl_framework.errors import TrainingError
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.registry import Registry, make_plugin_manager
from ddrl_framework.running import checkpoint
from ddrl_framework.running.checkpoint import load_training_state
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.trainer import Trainer


class _Faulty:
    """Brightness, except on call ``bad_call`` (counting from 0): NaN, or an exception."""

    def __init__(self, bad_call, mode):
        self.calls, self.bad_call, self.mode = 0, bad_call, mode

    def __call__(self, samples, prompts, metadata):
        call, self.calls = self.calls, self.calls + 1
        values = samples.float().flatten(1).mean(1)
        if call != self.bad_call:
            return values
        if self.mode == "raise":
            raise ConnectionError("judge went away")
        return values.clone().fill_(float("nan"))


class _FaultyPlugin:
    @hookimpl
    def register_reward_models(self, register):
        register("faulty", lambda *, bad_call=1, mode="nan": _Faulty(bad_call, mode))


def _trainer(tiny_config, *overrides, bad_call=2, mode="nan"):
    config = tiny_config()
    config.write_text(config.read_text().replace('name = "brightness"',
                                                 f'name = "faulty"\nbad_call = {bad_call}\nmode = "{mode}"'))
    manager = make_plugin_manager()
    manager.register(_FaultyPlugin(), name="faulty-plugin")
    overrides = ["train.checkpoint_every=1", "train.keep_checkpoints=5", "train.grid_samples=0", *overrides]
    return Trainer(load_experiment(config, overrides), Registry(manager), show_progress=False), config.parent / "run"


def _records(output):
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def test_a_nan_reward_stops_the_run_naming_iteration_and_source(tiny_config):
    trainer, output = _trainer(tiny_config)  # call 0: the first evaluation; 1: iteration 0; 2: iteration 1
    with pytest.raises(TrainingError, match=r"iteration 1: reward 'faulty' is not finite"):
        trainer.run()
    assert [r["iteration"] for r in _records(output)] == [0]
    assert checkpoint.latest_checkpoint(output / "checkpoints").name == "iter-000001"
    load_training_state(trainer.shards, output / "checkpoints" / "iter-000001")  # intact


def test_skip_leaves_the_weights_unchanged_and_counts_the_skip(tiny_config):
    trainer, output = _trainer(tiny_config, "train.on_nonfinite=skip")
    trainer.run()
    records = _records(output)
    assert [r["skipped_update"] for r in records] == [0, 1, 0]
    assert records[1]["nonfinite_source"] == "reward 'faulty'" and records[1]["reward_mean"] is None
    before, after, final = (_weights(output / "checkpoints" / f"iter-00000{i}") for i in (1, 2, 3))
    assert before.keys() == after.keys() and len(before) > 0
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not all(torch.equal(after[k], final[k]) for k in after)


def _weights(folder):
    """The policy's weights in a checkpoint (one process: one shard file)."""
    (shard,) = (folder / checkpoint.TENSORS_DIR).iterdir()
    return {k: v for k, v in load_file(shard).items() if k.startswith("model/")}


def test_a_reward_model_that_raises_is_named(tiny_config):
    trainer, _ = _trainer(tiny_config, bad_call=1, mode="raise")
    with pytest.raises(TrainingError, match="reward model 'faulty' of plugin 'faulty-plugin' raised ConnectionError: judge went away"):
        trainer.run()


def test_an_exploding_loss_stops_the_cli_with_exit_3(tiny_config, capsys):
    config = tiny_config("reverse-kl", "beta = 0.01")
    code = main(["train", str(config), "--quiet", "--set", "train.learning_rate=1e30",
                 "--set", "train.max_grad_norm=0.0", "--set", "train.iterations=6"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "stopped: iteration" in err and "is not finite" in err and "Traceback" not in err


def test_a_full_disk_keeps_the_previous_checkpoint(tiny_config, monkeypatch):
    trainer, output = _trainer(tiny_config, bad_call=-1)
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageWriter

    real_write = HuggingFaceStorageWriter.write_data

    def full_disk(writer, plan, planner):  # inside torch.distributed.checkpoint's save
        if "iter-000002" in str(writer.path):
            raise OSError(28, "No space left on device")
        return real_write(writer, plan, planner)

    monkeypatch.setattr(HuggingFaceStorageWriter, "write_data", full_disk)
    with pytest.raises(TrainingError, match=r"iter-000002 \(\[Errno 28\].*previous checkpoint .*iter-000001 is intact"):
        trainer.run()
    folder = output / "checkpoints"
    assert checkpoint.latest_checkpoint(folder).name == "iter-000001"
    assert sorted(p.name for p in folder.iterdir()) == ["iter-000001", "latest"]
    load_training_state(trainer.shards, folder / "iter-000001")
