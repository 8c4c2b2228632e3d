"""`ddrl` end to end on tiny digits configs, and bad input: exit code 2, a message, nothing lost."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from ddrl_framework.cli import main

REQUIRED = {"iteration", "reward_mean", "reward_std", "loss_policy", "ratio_mean", "seconds"}


def metrics(config_dir, name="run"):
    return [json.loads(l) for l in (config_dir / name / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("regularizer,options,key", [
    ("none", "", "loss_none"),
    ("reverse-kl", "beta = 0.01", "loss_reverse_kl"),
    ("forward-kl-data", "beta = 0.01", "loss_forward_kl_data"),
    ("forward-kl-data", 'beta = 0.01\nnoise = "fresh"\nevery_step = false', "loss_forward_kl_data"),
])
def test_train_runs_end_to_end_with_each_regularizer(tiny_config, regularizer, options, key):
    config = tiny_config(regularizer, options)
    assert main(["train", str(config), "--quiet"]) == 0
    records = metrics(config.parent)
    assert [r["iteration"] for r in records] == [0, 1, 2]
    for record in records:
        assert REQUIRED | {key, "reward_brightness"} <= record.keys()
        assert record["ratio_first_step"] == 1.0  # exactly: the first inner update is on-policy
    if regularizer == "reverse-kl":  # the first update starts at the reference: KL is exactly 0
        assert records[0][key] == 0.0 and records[-1][key] > 0.0
    if regularizer == "forward-kl-data":
        assert all(r[key] > 0 for r in records)
    run = config.parent / "run"
    for png in ("samples_start.png", "samples_final.png", "metrics.png"):
        Image.open(run / png).verify()
    assert (run / "checkpoints" / "latest").read_text() == "iter-000003"


@pytest.mark.slow
def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(tiny_config):
    straight = tiny_config("reverse-kl", "beta = 0.1", name="straight")
    assert main(["train", str(straight), "--quiet"]) == 0
    resumed = tiny_config("reverse-kl", "beta = 0.1", name="resumed")
    assert main(["train", str(resumed), "--quiet", "--set", "train.iterations=2"]) == 0
    assert main(["train", str(resumed), "--quiet", "--resume"]) == 0
    drop = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert drop(metrics(straight.parent, "resumed")) == drop(metrics(straight.parent, "straight"))


@pytest.mark.slow
def test_the_pretrained_reference_is_cached(tiny_config, monkeypatch):
    import ddrl_framework.running.pretrain as pretrain

    assert main(["pretrain", str(tiny_config()), "--quiet"]) == 0
    def fail(*args, **kwargs):
        raise AssertionError("pretrained again despite the cache")
    monkeypatch.setattr(pretrain, "_train", fail)
    assert main(["train", str(tiny_config()), "--quiet", "--set", "train.iterations=1"]) == 0


@pytest.mark.parametrize("args,message", [
    (["train", "missing.toml"], "config file not found: missing.toml"),
    (["train", "{config}", "--set", "regularizer.name=forward-kl"], "unknown regularizer 'forward-kl'. Did you mean 'forward-kl-data'?"),
    (["train", "{config}", "--set", "train.groupz=3"], "extra fields found (groupz) at key train"),
    (["train", "{config}", "--set", "train.groups=two"], "at key train.groups"),
    (["train", "{config}", "--set", "sampler.eta=0.0"], "set eta > 0"),
    (["train", "{config}", "--set", "train.trained_denoising_steps=[9]"], "train.trained_denoising_steps [9]"),
    (["pretrain", "{config}", "--set", "pretrain.optimizer_steps=0"], "[pretrain] optimizer_steps must be > 0"),
])
def test_user_errors_exit_2_with_a_message(tiny_config, capsys, args, message):
    config = tiny_config()
    argv = [a.format(config=config) for a in args] + ["--quiet"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


@pytest.mark.slow
def test_an_existing_run_is_never_overwritten(tiny_config, capsys):
    config = tiny_config("none", "")
    assert main(["train", str(config), "--quiet", "--set", "train.iterations=1"]) == 0
    before = (config.parent / "run" / "metrics.jsonl").read_bytes()
    assert main(["train", str(config), "--quiet"]) == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    assert main(["train", str(config), "--quiet", "--resume", "--set", "regularizer.name=reverse-kl"]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["train", str(config), "--quiet", "--resume", "--set", "train.iterations=0"]) == 2
    assert "past train.iterations = 0" in capsys.readouterr().err
    assert (config.parent / "run" / "metrics.jsonl").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("damaged", ["tensors/shard-00001-model-00001-of-00001.safetensors", "trainer.pt"])
def test_a_corrupt_checkpoint_exits_2_and_keeps_every_file(tiny_config, damaged):
    config = tiny_config("none", "")
    assert main(["train", str(config), "--quiet", "--set", "train.iterations=2"]) == 0
    run = config.parent / "run"
    assert (run / "checkpoints" / "iter-000002" / damaged).is_file()
    (run / "checkpoints" / "iter-000002" / damaged).write_bytes(b"not a checkpoint")
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "ddrl_framework", "train", str(config), "--resume",
                             "--quiet"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "corrupt" in result.stderr and damaged in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files


@pytest.mark.slow
def test_a_pickle_checkpoint_is_refused(tiny_config, capsys):
    import torch

    config = tiny_config("none", "")
    assert main(["train", str(config), "--quiet", "--set", "train.iterations=2"]) == 0
    state = config.parent / "run" / "checkpoints" / "iter-000002" / "trainer.pt"
    torch.save({"iteration": 2, "payload": _Pickled()}, state)
    assert main(["train", str(config), "--quiet", "--resume"]) == 2
    assert "weights_only" in capsys.readouterr().err


class _Pickled:
    pass


def test_plugins_lists_every_role(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for header in ("policies:", "samplers:", "reward models:", "regularizers:", "data sources:"):
        assert header in out
    assert "forward-kl-data" in out and "ddrl-framework 0.1.0" in out


def test_a_config_error_leaves_no_run_behind(tiny_config):
    config = tiny_config()
    assert main(["train", str(config), "--quiet", "--set", "regularizer.name=nope"]) == 2
    assert not (config.parent / "run").exists()
