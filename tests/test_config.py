"""Experiment files: structure, overrides, and errors that name the file and key."""

import pytest

from ddrl_framework.config import load_experiment, parse_override
from ddrl_framework.errors import UserError

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
        "rewards.0.weight=0.25", "train.trained_steps=[0, 2]", "output_dir=elsewhere"])
    assert experiment.train.iterations == 7
    assert experiment.regularizer.options == {"beta": 0.5}
    assert experiment.rewards[0].weight == 0.25
    assert experiment.train.trained_steps == (0, 2)
    assert experiment.output_dir == "elsewhere"


def test_unquoted_override_values_are_strings():
    assert parse_override("policy.pretrained=some/dir") == (["policy", "pretrained"], "some/dir")


@pytest.mark.parametrize("text,match", [
    (MINIMAL + "[train]\niterationz = 3\n", r"exp\.toml.*extra fields found \(iterationz\)"),
    (MINIMAL + "[train]\niterations = \"3\"\n", r"exp\.toml.*expected int.*at key train\.iterations"),
    (MINIMAL + "[train]\nadvantage_normalization = \"std\"\n", r"train\.advantage_normalization"),
    (MINIMAL.replace('name = "unet2d"\n', ""), r"missing 'name'.*at key policy"),
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
