"""Experiment files: structure, overrides, and errors that name the file and key."""


import pytest

from ddrl_framework.errors import UserError
from ddrl_framework.running.config import parse_override
from ddrl_framework.running.loader import load_experiment, load_file
from tests.conftest import CONFIGS


MINIMAL = """
output_dir = "runs/x"
[policy]
name = "unet2d"
sample_size = 8
[sampler]
name = "ddim-sde"
[[rewards]]
name = "brightness"
weight = 2
[data]
name = "sklearn-digits"
"""


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_sections_split_into_name_and_plugin_options(tmp_path):
    experiment = load_experiment(write(tmp_path, MINIMAL))
    assert experiment.policy.name == "unet2d" and experiment.policy.options == {"sample_size": 8}
    assert experiment.rewards[0].weight == 2.0
    assert experiment.regularizer.name == "none" and experiment.train.iterations == 100


def test_overrides_set_nested_and_listed_values(tmp_path):
    experiment = load_experiment(write(tmp_path, MINIMAL), [
        "train.iterations=7", "regularizer.name=reverse-kl", "regularizer.beta=0.5",
        "rewards.0.weight=0.25", "train.trained_denoising_steps=[0, 2]", "output_dir=elsewhere"])
    assert experiment.train.iterations == 7
    assert experiment.regularizer.options == {"beta": 0.5}
    assert experiment.rewards[0].weight == 0.25
    assert experiment.train.trained_denoising_steps == (0, 2)
    assert experiment.output_dir == "elsewhere"


def test_unquoted_override_values_are_strings():
    assert parse_override("policy.pretrained=some/dir") == (["policy", "pretrained"], "some/dir")


@pytest.mark.parametrize("text,match", [
    (MINIMAL + "[train]\niterationz = 3\n", r"exp\.toml.*extra fields found \(iterationz\)"),
    (MINIMAL + "[train]\niterations = \"3\"\n", r"exp\.toml: train\.iterations: expected int"),
    (MINIMAL + "[train]\nadvantage_normalization = \"std\"\n", r"train\.advantage_normalization"),
    (MINIMAL.replace('name = "unet2d"\n', ""), r"exp\.toml: policy: missing 'name'"),
    (MINIMAL.replace('output_dir = "runs/x"', ""), r"output_dir"),
    ("seed = [", r"not valid TOML"),
])
def test_bad_configs_name_the_file_and_key(tmp_path, text, match):
    with pytest.raises(UserError, match=f"(?s){match}"):
        load_experiment(write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="config file not found: .*nope.toml"):
        load_experiment(tmp_path / "nope.toml")


def test_bad_override_syntax():
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_override("train.iterations")


def test_a_run_recorded_before_a_field_existed_still_resumes():
    from ddrl_framework.running.run_dir import config_changes

    recorded = {"seed": 0, "regularizer": {"name": "reverse-kl", "beta": 0.1},
                "train": {"iterations": 10, "groups": 8}}
    newer = {"seed": 0, "regularizer": {"name": "reverse-kl", "beta": 0.1},
             "train": {"iterations": 20, "groups": 8, "reward_aggregation": "sum"}}
    assert config_changes(recorded, newer) == []
    newer["train"]["reward_aggregation"] = "advantages"
    newer["regularizer"]["beta"] = 0.2
    assert config_changes(recorded, newer) == ["regularizer.beta", "train.reward_aggregation"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_and_its_plugin_options_are_valid(path):
    """Without building anything (the real-run configs name weights that are not here)."""
    from ddrl_framework.options import structure_options
    from ddrl_framework.registry import load_registry
    from ddrl_framework.running.config import read_toml
    from ddrl_framework.running.validation import sections

    registry = load_registry()
    experiments = [load_experiment(path)]  # a compare file too: its [compare] table is ignored
    if "compare" in read_toml(path):
        experiments += [run.experiment for run in load_file(path).runs()]
    for e in experiments:
        for section in sections(e):  # every table of every role (roles.ROLES), [eval_data] too
            entry = registry.get(section.role, section.name)
            structure_options(entry.factory, section.options, f"{path.name} {section.where}", section.name)


def test_a_compare_file_is_an_experiment_and_its_compare_table_is_checked_but_not_run(tiny_compare_config):
    path = tiny_compare_config()
    experiment = load_experiment(path)  # without --arm: the file as it is, [compare] not run
    assert experiment.regularizer.name == "forward-kl-data"
    assert experiment.regularizer.options == {"beta": 0.01}
    assert experiment.output_dir == str(path.parent / "cmp")
    path.write_text(path.read_text().replace("seeds = [0, 1]", "seeds = [0, 1]\njbos = 2"))
    for arm in (None, "none"):  # a typo in [compare] is an error with or without --arm
        with pytest.raises(UserError, match=r"cmp\.toml: compare: extra fields found \(jbos\)"):
            load_experiment(path, arm=arm)


def test_an_arm_is_the_run_compare_makes(tiny_compare_config):
    path = tiny_compare_config()
    runs = {run.name: run.experiment for run in load_file(path).runs()}
    assert load_experiment(path, arm="reverse-kl", beta=0.1) == runs["reverse-kl-beta0.1-seed0"]
    assert load_experiment(path, arm="none") == runs["none-seed0"]
    data = load_experiment(path, arm="data")  # its one beta, its own overrides
    assert data == runs["data-beta0.05-seed0"]
    assert data.regularizer.name == "forward-kl-data" and data.regularizer.options == {"beta": 0.05}
    assert data.train.advantage_normalization == "raw" and data.pretrain.seed == 1
    assert data.output_dir == str(path.parent / "cmp" / "runs" / "data-beta0.05-seed0")


def test_beta_picks_the_beta_and_names_the_run_folder(tiny_compare_config):
    path = tiny_compare_config()
    runs = path.parent / "cmp" / "runs"
    new_point = load_experiment(path, arm="reverse-kl", beta=0.3)
    assert new_point.regularizer.options == {"beta": 0.3}
    assert new_point.output_dir == str(runs / "reverse-kl-beta0.3-seed0")
    other_seed = load_experiment(path, ["seed=1"], arm="data", beta=2)
    assert other_seed.seed == 1 and other_seed.regularizer.options == {"beta": 2.0}
    assert other_seed.output_dir == str(runs / "data-beta2-seed1")
    without_arm = load_experiment(path, beta=0.7)  # regularizer.beta of the file as it is
    assert without_arm.regularizer.options == {"beta": 0.7}
    assert without_arm.output_dir == str(path.parent / "cmp")


@pytest.mark.parametrize("arm,beta,match", [
    ("none", 1.0, r"cmp\.toml: --beta 1: the regularizer 'none' of arm 'none' has no beta option; "
                  r"drop --beta, or pick an arm with one \(reverse-kl, data\)"),
    ("reverse-kl", None, r"cmp\.toml: arm 'reverse-kl' sweeps betas 0\.01, 0\.1; pick one with --beta"),
    ("reverse", None, r"cmp\.toml: no arm 'reverse' in \[compare\]\. Did you mean 'reverse-kl'\? "
                      r"Its arms: none, reverse-kl, data\."),
    (None, 1.0, r"the regularizer 'none' has no beta option"),
])
def test_arm_and_beta_errors_say_what_would_be_right(tiny_compare_config, arm, beta, match):
    overrides = ["regularizer={name='none'}"] if arm is None else []
    with pytest.raises(UserError, match=match):
        load_experiment(tiny_compare_config(), overrides, arm=arm, beta=beta)


def test_an_arm_of_a_file_without_compare_is_an_error(tiny_config):
    with pytest.raises(UserError, match=r"run\.toml: --arm none: this file has no \[compare\] table"):
        load_experiment(tiny_config(), arm="none")


@pytest.mark.parametrize("where,key,new", [
    ("file", "pretrain.steps", "pretrain.optimizer_steps"),
    ("file", "train.trained_steps", "train.trained_denoising_steps"),
    ("arm", "train.steps_per_update", "train.denoising_steps_per_update"),
])
def test_a_renamed_key_names_its_new_name_on_every_path(tiny_compare_config, where, key, new):
    path = tiny_compare_config()
    if where == "arm":  # in an arm's own overrides
        path.write_text(path.read_text().replace('set = ["', f'set = ["{key}=1", "'))
    overrides = [f"{key}=1"] if where == "file" else []
    message = f"{key} was renamed {new}; rename the key"
    with pytest.raises(UserError, match=message):
        load_experiment(path, overrides, arm="data")
    with pytest.raises(UserError, match=message):
        load_file(path, overrides).runs()
    if where == "file":
        with pytest.raises(UserError, match=message):
            load_experiment(path, overrides)


def test_compare_of_a_file_without_compare_runs_the_three_default_arms(tiny_config):
    runs = load_file(tiny_config()).runs()
    assert [r.name for r in runs] == ["none-seed0", "reverse-kl-seed0", "forward-kl-data-seed0"]
    assert [r.experiment.regularizer.options for r in runs] == [{}, {}, {}]  # each plugin's default beta
