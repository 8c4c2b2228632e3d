"""Loggers as plugins: a real run writes TensorBoard event files (read back with tensorboard's own
reader) and a W&B offline run, both at once; a logger whose package is missing is refused before
any work, naming the extra."""

import importlib.util
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ddrl_framework.cli import main
from ddrl_framework.errors import TrainingError
from ddrl_framework.running.loggers import RunLoggers
from ddrl_framework.testing import LoggerContract
from tests.conftest import registry

LOGGERS = '\n[[loggers]]\nname = "tensorboard"\n\n[[loggers]]\nname = "wandb"\n'


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")


@pytest.mark.slow
def test_a_run_logs_to_tensorboard_and_wandb_offline_at_once(tiny_config, tmp_path, offline_wandb, capsys):
    path = tiny_config(name="logged")
    path.write_text(path.read_text().replace("group_size = 4", "group_size = 4\neval_every = 2\neval_samples = 8")
                    + LOGGERS)
    assert main(["train", str(path), "--quiet"]) == 0
    output = tmp_path / "logged"
    printed = capsys.readouterr().out
    assert f"tensorboard --logdir {output / 'tensorboard'}" in printed and "wandb sync" in printed
    run = events(output / "tensorboard")
    tags = run.Tags()
    assert [e.step for e in run.Scalars("train/reward_mean")] == [0, 1, 2]
    assert [e.step for e in run.Scalars("eval/reward_mean")] == [0, 2, 3]  # evaluations at 0, 2 and the end
    assert "train/loss_forward_kl_data" in tags["scalars"]
    grids = run.Images("eval/samples")
    assert [g.step for g in grids] == [0, 2, 3] and grids[0].encoded_image_string.startswith(b"\x89PNG")
    offline = list((output / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list((output / "wandb").iterdir())
    assert list(offline[0].glob("run-*.wandb")) and (offline[0] / "files").is_dir()


def test_tensorboard_logs_videos_as_gifs(tmp_path):
    logger = registry().build("logger", "tensorboard", {"logdir": str(tmp_path / "tb")}, "[[loggers]] #1")
    assert logger.start(tmp_path, {}) == f"tensorboard --logdir {tmp_path / 'tb'}"
    logger.log_samples("eval/samples", torch.rand(2, 3, 4, 8, 8), step=5)
    logger.log_metrics({"iteration": 5, "reward_mean": 0.5, "note": "text"}, 5, "eval")
    logger.close()
    run = events(tmp_path / "tb")
    assert run.Tags()["scalars"] == ["eval/reward_mean"]
    video = run.Images("eval/samples_video")
    assert video[0].step == 5 and video[0].encoded_image_string.startswith(b"GIF8")


def test_wandb_logs_video_files_offline(tmp_path, offline_wandb):
    logger = registry().build("logger", "wandb", {"project": "t"}, "[[loggers]] #1")
    line = logger.start(tmp_path / "run", {"seed": 0})
    logger.log_samples("eval/samples", torch.rand(2, 3, 3, 8, 8), step=1)
    logger.close()
    assert "wandb sync" in line
    assert list((tmp_path / "run" / "wandb-media").glob("*.gif"))
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.parametrize("name,extra", [("tensorboard", "[tensorboard]"), ("wandb", "[wandb]")])
def test_a_missing_package_is_a_user_error_naming_the_extra_before_any_work(tiny_config, tmp_path, monkeypatch,
                                                                           capsys, name, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda module, *a: None if module == name else real(module, *a))
    path = tiny_config(name="missing")
    path.write_text(path.read_text() + f'\n[[loggers]]\nname = "{name}"\n')
    assert main(["train", str(path), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "[[loggers]] #1" in error and f"needs the package '{name}'" in error and extra in error
    assert not (tmp_path / "missing").exists()  # nothing pretrained or written


def test_a_logger_that_raises_stops_the_run_naming_it():
    class Broken:
        def log_metrics(self, values, step, kind):
            raise OSError("disk full")

    loggers = RunLoggers([("logger 'broken' of plugin 'x'", Broken())])
    with pytest.raises(TrainingError, match="logger 'broken' of plugin 'x' raised in log_metrics: OSError"):
        loggers.log_metrics({"a": 1.0}, 0, "train")


def test_an_unknown_logger_is_named_with_the_known_ones(tiny_config, capsys):
    path = tiny_config(name="typo")
    path.write_text(path.read_text() + '\n[[loggers]]\nname = "tensorbord"\n')
    assert main(["train", str(path), "--quiet"]) == 2
    assert "Did you mean 'tensorboard'" in capsys.readouterr().err


class TestTensorBoardContract(LoggerContract):
    def make_logger(self):
        return registry().build("logger", "tensorboard", {}, "[[loggers]] #1")


@pytest.mark.usefixtures("offline_wandb")
class TestWandbContract(LoggerContract):
    def make_logger(self):
        return registry().build("logger", "wandb", {}, "[[loggers]] #1")
