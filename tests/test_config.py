"""Experiment files: structure, overrides, and errors that name the file and key."""

from pathlib import Path

import pytest

from ddrl_framework.errors import UserError
from ddrl_framework.running.config import parse_override
from ddrl_framework.running.loader import load_experiment

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

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
    from ddrl_framework.comparison.compare import load_compare
    from ddrl_framework.options import structure_options
    from ddrl_framework.registry import load_registry
    from ddrl_framework.running.config import read_toml

    registry = load_registry()
    if "compare" in read_toml(path):
        experiments = [run.experiment for run in load_compare(path)[2]]
    else:
        experiments = [load_experiment(path)]
    for e in experiments:
        parts = [("policy", e.policy), ("sampler", e.sampler), ("regularizer", e.regularizer), ("data", e.data)]
        parts += [("reward", r) for r in e.rewards] + [("metric", m) for m in e.metrics]
        for role, component in parts:
            entry = registry.get(role, component.name)
            structure_options(entry.factory, component.options, f"{path.name} [{role}]", component.name)
