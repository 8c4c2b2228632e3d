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
    (["train", "{config}", "--set", "train.groupz=3"], "{config}: train: extra fields found (groupz)"),
    (["train", "{config}", "--set", "train.groups=two"], "{config}: train.groups: expected int"),
    (["train", "{config}", "--set", "sampler.eta=0.0"], "set eta > 0"),
    (["train", "{config}", "--set", "train.trained_denoising_steps=[9]"], "train.trained_denoising_steps: [9] out of range: the sampler 'ddim-sde' has 4 denoising steps, 0..3"),
    (["pretrain", "{config}", "--set", "pretrain.optimizer_steps=0"], "[pretrain] optimizer_steps must be > 0"),
    (["train", "{config}", "--arm", "none"],
     "{config}: --arm none: this file has no [compare] table, so it has no arms; drop --arm"),
    (["doctor", "{compare}", "--arm", "dta"],
     "{compare}: no arm 'dta' in [compare]. Did you mean 'data'? Its arms: none, reverse-kl, data."),
    (["train", "{compare}", "--arm", "none", "--beta", "3"],
     "{compare}: --beta 3: the regularizer 'none' of arm 'none' has no beta option; drop --beta, "
     "or pick an arm with one (reverse-kl, data)"),
    (["pretrain", "{compare}", "--arm", "reverse-kl"],
     "{compare}: arm 'reverse-kl' sweeps betas 0.01, 0.1; pick one with --beta (e.g. --beta 0.01)"),
    (["train", "{config}", "--set", "regularizer={{name='none'}}", "--beta", "2"],
     "{config}: --beta 2: the regularizer 'none' has no beta option; drop --beta"),
    (["train", "{compare}", "--set", "pretrain.steps=5"], "pretrain.steps was renamed pretrain.optimizer_steps"),
    (["pretrain", "{config}", "--set", "pretrain.steps=5"], "pretrain.steps was renamed pretrain.optimizer_steps"),
    (["doctor", "{config}", "--set", "pretrain.steps=5"], "pretrain.steps was renamed pretrain.optimizer_steps"),
    (["compare", "{compare}", "--set", "pretrain.steps=5"], "pretrain.steps was renamed pretrain.optimizer_steps"),
    (["train", "{compare}", "--arm", "data", "--set", "pretrain.steps=5"],
     "pretrain.steps was renamed pretrain.optimizer_steps"),
])
def test_user_errors_exit_2_with_a_message(tiny_config, tiny_compare_config, capsys, args, message):
    paths = {"config": tiny_config(), "compare": tiny_compare_config()}
    argv = [a.format(**paths) for a in args] + ["--quiet"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message.format(**paths) in error and "Traceback" not in error
    assert error.startswith(f"ddrl {args[0]}: error: ")


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


def _without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.slow
def test_train_arm_is_the_run_compare_makes(tiny_compare_config, capsys):
    from ddrl_framework.comparison.compare import is_finished, load_compare

    config = tiny_compare_config()
    assert main(["train", str(config), "--arm", "data", "--quiet"]) == 0
    runs = config.parent / "cmp" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["data-beta0.05-seed0"]
    other = config.parent / "other"
    assert main(["compare", str(config), "--only", "data-beta0.05-seed0", "--quiet",
                 "--set", f"output_dir={other}"]) == 0
    trained, compared = metrics(runs, "data-beta0.05-seed0"), metrics(other / "runs", "data-beta0.05-seed0")
    assert [r["iteration"] for r in trained] == [0, 1, 2]
    assert all(r["loss_forward_kl_data"] > 0 for r in trained)
    assert _without_seconds(trained) == _without_seconds(compared)
    recorded = json.loads((runs / "data-beta0.05-seed0" / "config.json").read_text())["experiment"]
    assert recorded["regularizer"] == {"name": "forward-kl-data", "beta": 0.05}
    assert recorded["train"]["advantage_normalization"] == "raw" and recorded["pretrain"]["seed"] == 1
    # ddrl compare takes it as its own run: finished, and resumable with a larger budget
    run = next(r for r in load_compare(config)[2] if r.name == "data-beta0.05-seed0")
    assert is_finished(run)
    assert main(["compare", str(config), "--only", run.name, "--quiet", "--set", "train.iterations=4"]) == 0
    assert [r["iteration"] for r in metrics(runs, run.name)] == [0, 1, 2, 3]


@pytest.mark.slow
def test_train_beta_picks_the_beta_and_names_the_run_folder(tiny_compare_config, capsys):
    config = tiny_compare_config()
    assert main(["train", str(config), "--arm", "reverse-kl", "--beta", "0.1", "--quiet",
                 "--set", "train.iterations=1", "--set", "seed=1"]) == 0
    runs = config.parent / "cmp" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["reverse-kl-beta0.1-seed1"]
    assert f"metrics: {runs / 'reverse-kl-beta0.1-seed1' / 'metrics.jsonl'}" in capsys.readouterr().out
    recorded = json.loads((runs / "reverse-kl-beta0.1-seed1" / "config.json").read_text())["experiment"]
    assert recorded["regularizer"] == {"name": "reverse-kl", "beta": 0.1} and recorded["seed"] == 1
    assert "loss_reverse_kl" in metrics(runs, "reverse-kl-beta0.1-seed1")[0]


@pytest.mark.slow
def test_a_compare_file_trains_as_it_is_without_arm(tiny_compare_config):
    config = tiny_compare_config()
    assert main(["train", str(config), "--quiet", "--set", "train.iterations=1"]) == 0
    recorded = json.loads((config.parent / "cmp" / "config.json").read_text())["experiment"]
    assert recorded["regularizer"] == {"name": "forward-kl-data", "beta": 0.01} and recorded["seed"] == 0
    assert [r["iteration"] for r in metrics(config.parent, "cmp")] == [0]
    assert not (config.parent / "cmp" / "runs").exists()


@pytest.mark.slow
def test_doctor_checks_a_compare_file_and_its_arms(tiny_compare_config, capsys, monkeypatch):
    import ddrl_framework.running.components as components

    built, real = [], components.build_components
    monkeypatch.setattr(components, "build_components",
                        lambda experiment, *a, **k: built.append(experiment) or real(experiment, *a, **k))
    config = tiny_compare_config()
    assert main(["doctor", str(config), "--quiet"]) == 0
    assert main(["doctor", str(config), "--quiet", "--arm", "reverse-kl", "--beta", "0.1"]) == 0
    assert capsys.readouterr().out.count("all checks passed") == 2
    assert [(e.regularizer.name, e.regularizer.options) for e in built] == [
        ("forward-kl-data", {"beta": 0.01}), ("reverse-kl", {"beta": 0.1})]
    assert built[1].output_dir == str(config.parent / "cmp" / "runs" / "reverse-kl-beta0.1-seed0")


@pytest.mark.slow
def test_pretrain_of_a_compare_file_and_of_an_arm(tiny_compare_config, capsys):
    from ddrl_framework.running.loader import load_experiment
    from ddrl_framework.running.pretrain import pretrained_dir

    config = tiny_compare_config()
    assert main(["pretrain", str(config), "--quiet"]) == 0
    assert main(["pretrain", str(config), "--quiet", "--arm", "data"]) == 0  # pretrain.seed = 1
    printed = capsys.readouterr().out.split()
    expected = [pretrained_dir(load_experiment(config)), pretrained_dir(load_experiment(config, arm="data"))]
    assert printed == [str(p) for p in expected] and expected[0] != expected[1]
    assert all((p / "pretrain.json").is_file() for p in expected)
