"""Every bad input is caught before any work (running/validation.py and the config's value
ranges): exit code 2, a message naming the file and the key, nothing pretrained, built or
written. Each case runs on an empty cache with pretraining replaced by a failure."""

from __future__ import annotations

import json

import pytest

from ddrl_framework.cli import main


@pytest.fixture
def no_work(tmp_path, monkeypatch):
    """A fresh, empty cache, and pretraining that fails if it is ever reached."""
    import ddrl_framework.running.pretrain as pretrain

    monkeypatch.setenv("DDRL_CACHE_DIR", str(tmp_path / "empty-cache"))

    def reached(*args, **kwargs):
        raise AssertionError("a bad input reached pretraining")

    monkeypatch.setattr(pretrain, "_train", reached)


# (command, --set overrides or other arguments, what the message must say); "{config}" is the file
CASES = [
    ("train", ["rewards.0.name=centre-mass"],
     "{config}: [[rewards]] #1 name: unknown reward model 'centre-mass'."),
    ("train", ["sampler.name=ddim"], "{config}: [sampler] name: unknown sampler 'ddim'. Did you mean 'ddim-sde'?"),
    ("train", ["regularizer.beta=-1.0"], "{config}: [regularizer].beta: regularizer 'forward-kl-data' of plugin"),
    ("train", ["sampler.eta=-0.5"], "{config}: [sampler].eta: sampler 'ddim-sde' of plugin 'ddim-sde'"),
    ("train", ["sampler.denoising_steps=0"], "{config}: [sampler].denoising_steps: sampler 'ddim-sde'"),
    ("train", ["train.trained_denoising_steps=[1, 9]"],
     "{config}: train.trained_denoising_steps: [9] out of range: the sampler 'ddim-sde' has 4 denoising steps"),
    ("train", ["train.trained_denoising_steps=[-1]"],
     "{config}: train.trained_denoising_steps: must be distinct sampler step indices >= 0, got [-1]; leave it "
     "out for the sampler's default"),
    ("train", ["train.groups=0"], "{config}: train.groups: must be a finite number >= 1, got 0"),
    ("train", ["train.learning_rate=nan"], "{config}: train.learning_rate: must be a finite number > 0, got nan"),
    ("train", ["train.iterations=-5"], "{config}: train.iterations: must be a finite number >= 0, got -5"),
    ("train", ["train.clip_range=-0.2"], "{config}: train.clip_range: must be a finite number > 0, got -0.2"),
    ("train", ["pretrain.batch_size=0"], "{config}: pretrain.batch_size: must be a finite number >= 1, got 0"),
    ("train", ["rewards.0.weight=inf"], "{config}: rewards[0].weight: must be a finite number, got inf"),
    ("train", ["sampler.name=flow-sde"],
     "{config}: [sampler] name: the sampler 'flow-sde' samples a 'flow-matching' forward process, but the "
     "policy 'unet2d' (plugin 'unet2d' (ddrl-framework 0.1.0)) has a 'ddpm' one: use a sampler for 'ddpm' "
     "(ddim-sde)"),
    ("pretrain", ["rewards.0.name=centre-mass"], "{config}: [[rewards]] #1 name: unknown reward model"),
    ("doctor", ["sampler.name=flow-sde"], "{config}: [sampler] name: the sampler 'flow-sde' samples"),
    ("pretrain", ["metrics=[{name='fid'}]"], "{config}: [[metrics]] #1 name: unknown metric 'fid'"),
    ("train", ["train.group_size=1"], "{config}: train.group_size: must be a finite number >= 2, got 1"),
    # a typo inside [compare] is caught by every command, not only by `ddrl compare`
    ("train", ["compare.arms=[{name='none', regularizer={name='none'}, betaz=[1.0]}]"],
     "{config}: compare.arms[0]: extra fields found (betaz)"),
    ("train", ["compare.seeds=[]"], "must list at least one seed, e.g. [0, 1, 2]"),
    ("compare", [], "{config}: no [compare] table, so nothing to compare"),
]


@pytest.mark.parametrize("command,overrides,message", CASES)
def test_a_bad_value_exits_2_before_any_work(tiny_config, no_work, capsys, command, overrides, message):
    config = tiny_config()
    argv = [command, str(config), "--quiet", *[x for o in overrides for x in ("--set", o)]]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message.format(config=config) in error, error
    assert error.startswith(f"ddrl {command}: error: ") and "Traceback" not in error
    assert not (config.parent / "run").exists()  # nothing written


def test_a_binary_config_file_is_a_user_error(tmp_path, no_work, capsys):
    config = tmp_path / "weights.toml"
    config.write_bytes(bytes(range(256)))
    assert main(["train", str(config), "--quiet"]) == 2
    assert f"{config}: not a text file (byte 128 is not UTF-8)" in capsys.readouterr().err


def test_an_output_dir_that_is_a_file_is_a_user_error(tiny_config, tmp_path, no_work, capsys):
    config, blocker = tiny_config(), tmp_path / "taken"
    blocker.write_text("not a folder")
    assert main(["train", str(config), "--quiet", "--set", f"output_dir={blocker / 'run'}"]) == 2
    error = capsys.readouterr().err
    assert f"{config}: output_dir = '{blocker / 'run'}': {blocker} is a file, not a folder" in error
    assert blocker.read_text() == "not a folder"


def test_a_folder_holding_another_run_is_refused_before_pretraining(tiny_config, no_work, capsys):
    config = tiny_config()
    (config.parent / "run").mkdir()
    (config.parent / "run" / "config.json").write_text(json.dumps({"identity": "other", "experiment": {}}))
    assert main(["train", str(config), "--quiet"]) == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err


def test_a_bad_arm_of_a_comparison_exits_2_before_any_work(tiny_compare_config, no_work, capsys):
    config = tiny_compare_config()
    config.write_text(config.read_text().replace("betas = [0.05]", "betas = [-0.05]"))
    assert main(["compare", str(config), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"{config} (run data-beta-0.05-seed0): [regularizer].beta" in error
    assert not (config.parent / "cmp").exists()


def test_an_arm_with_both_a_beta_and_betas_exits_2_before_any_work(tiny_compare_config, no_work, capsys):
    """betas would silently replace the regularizer table's beta: refused, naming both."""
    config = tiny_compare_config()
    config.write_text(config.read_text().replace('regularizer = {name = "reverse-kl"}',
                                                 'regularizer = {name = "reverse-kl", beta = 0.5}'))
    assert main(["compare", str(config), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "arm 'reverse-kl' sets both regularizer.beta = 0.5 and betas = [0.01, 0.1]" in error
    assert "compare.arms" in error and "Traceback" not in error
    assert not (config.parent / "cmp").exists()


def test_a_valid_config_does_reach_pretraining(tiny_config, no_work):
    """The fixture's failure is real: a valid config does reach pretraining."""
    with pytest.raises(AssertionError, match="reached pretraining"):
        main(["train", str(tiny_config()), "--quiet"])


@pytest.mark.slow
def test_resume_without_a_run_says_it_starts_one(tiny_config, capsys):
    config = tiny_config("none", "")
    settings = ["pretrain.optimizer_steps=0", "train.iterations=1", "train.eval_samples=4", "train.grid_samples=0"]
    assert main(["train", str(config), "--quiet", "--resume", *[x for s in settings for x in ("--set", s)]]) == 0
    error = capsys.readouterr().err
    assert f"ddrl train: --resume: {config.parent / 'run'} holds no run yet, so this starts a new one there" in error
    # no pretraining and no pretrained weights: said, not silent (the tiny backbones start so on purpose)
    assert "[pretrain] optimizer_steps = 0 and [policy] sets no pretrained, so RL starts from the policy 'unet2d'" in error
    assert (config.parent / "run" / "checkpoints" / "latest").read_text() == "iter-000001"


def test_a_typo_in_the_file_is_reported_before_torch_or_any_plugin_loads(tiny_config):
    import subprocess
    import sys

    code = ("import sys\nfrom ddrl_framework.cli import main\n"
            f"code = main(['train', {str(tiny_config())!r}, '--set', 'train.groupz=3'])\n"
            "print(code, sorted(m for m in ('torch', 'ddrl_plugins') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "2 []", result.stdout + result.stderr
    assert "train: extra fields found (groupz)" in result.stderr


def test_a_primary_comparison_naming_no_setting_exits_2_before_any_work(tiny_compare_config, no_work, capsys):
    config = tiny_compare_config()
    config.write_text(config.read_text() + '\n[[compare.primary]]\nmetric = "fd"\npair = ["none", "reverse"]\n')
    assert main(["compare", str(config), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "compare.primary" in error and "names 'reverse': no such setting" in error
    assert not (config.parent / "cmp").exists()


FD_METRIC = '\n[[metrics]]\nname = "frechet-distance"\n'  # declares "fd", with its default margin


@pytest.mark.parametrize("primary, compare_keys, expected", [
    ('metric = "reward_mean"\npair = ["none", "data"]\nview = "equal budget"', "",
     "'reward_mean' has no margin, the smallest difference worth a verdict"),
    ('metric = "fd"\npair = ["none", "data"]\nview = "matched reward"', "",
     "a primary comparison at matched reward needs its level declared before the runs"),
])
def test_a_primary_comparison_without_its_margin_or_level_exits_2_before_any_work(
        tiny_compare_config, no_work, capsys, primary, compare_keys, expected):
    """A verdict's margin and matched-reward level are fixed before the runs, never read off them."""
    config = tiny_compare_config()
    config.write_text(config.read_text() + f"\n[[compare.primary]]\n{primary}\n" + FD_METRIC)
    assert main(["compare", str(config), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "compare.primary[0]" in error and expected in error
    assert not (config.parent / "cmp").exists()


def test_a_declared_reward_margin_and_level_make_the_primary_comparisons_valid(tiny_compare_config):
    from ddrl_framework.comparison.compare import load_compare, metric_tables
    from ddrl_framework.comparison.metric_keys import declared_keys
    from ddrl_framework.comparison.verdicts import check_declared
    from ddrl_framework.registry import load_registry

    config = tiny_compare_config()
    config.write_text(config.read_text().replace("[compare]\n", "[compare]\nmatched_reward = [0.5]\n", 1)
                      + '\n[[compare.metrics]]\nkey = "reward_mean"\nmargin = 0.02\n'
                      + '\n[[compare.primary]]\nmetric = "reward_mean"\npair = ["none", "data"]\nview = "equal budget"\n'
                      + '\n[[compare.primary]]\nmetric = "fd"\npair = ["none", "data"]\n' + FD_METRIC)
    base, compare, _ = load_compare(str(config), [])
    check_declared(compare, str(config), declared_keys(metric_tables(base), load_registry()))  # no error


def test_an_unknown_component_a_run_used_names_the_distribution_that_provided_it(tiny_config, no_work, capsys):
    """The run folder's config.json records which distribution provided each component: when that
    plugin is no longer installed, the error says what to install, not only a similar built-in."""
    config = tiny_config()
    run = config.parent / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"identity": "x", "experiment": {}, "components": {
        "rewards": [{"name": "center-mass", "plugin": "center-mass", "distribution": "ddrl-center-mass",
                     "version": "0.2.0"}]}}))
    config.write_text(config.read_text().replace('name = "brightness"', 'name = "center-mass"'))
    assert main(["train", str(config), "--quiet", "--resume"]) == 2
    error = capsys.readouterr().err
    assert "unknown reward model 'center-mass'" in error
    assert (f"The run in {run} used 'center-mass' from the distribution ddrl-center-mass 0.2.0: install it "
            "(pip install ddrl-center-mass).") in error


def test_a_regularizer_option_set_on_a_file_without_one_points_at_the_arms_beta(no_work, capsys):
    """The main job's file has no [regularizer] table (its arms have): `--set regularizer.beta=...`
    is refused naming what to do, not as a table that lacks its name."""
    from tests.conftest import CONFIGS

    argv = ["train", str(CONFIGS / "digits-brightness.toml"), "--arm", "forward-kl-data", "--set", "regularizer.beta=-1.0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--set regularizer.beta: the file has no [regularizer] table to change" in err and "--beta B" in err
