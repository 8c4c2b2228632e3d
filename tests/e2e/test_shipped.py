"""The results the package ships (ddrl_framework/shipped): found for their config from an empty
cache, keyed as ``ddrl pretrain`` keys them, and remade bitwise by the code that made them
(benchmarks/shipped_reference.py remakes the full-size reference)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ddrl_framework.kit.cache import SHIPPED, config_hash
from ddrl_framework.registry import load_registry
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.pretrain import ensure_pretrained, find_pretrained, policy_options, pretrain_key

MAIN_JOB = "configs/digits-brightness.toml"


def test_the_main_jobs_reference_is_shipped_under_its_own_key(monkeypatch, tmp_path):
    monkeypatch.setenv("DDRL_CACHE_DIR", str(tmp_path / "empty"))
    experiment = load_experiment(MAIN_JOB)
    found = find_pretrained(experiment)
    assert found is not None and found.parent.parent == SHIPPED
    stored = json.loads((found / "pretrain.json").read_text())["key"]
    assert stored == json.loads(json.dumps(pretrain_key(experiment), default=list))
    assert found.name == f"unet2d-{config_hash(stored)}"
    assert policy_options(experiment)["pretrained"] == str(found)


def test_another_pretraining_recipe_does_not_take_the_shipped_reference(monkeypatch, tmp_path):
    monkeypatch.setenv("DDRL_CACHE_DIR", str(tmp_path / "empty"))
    experiment = load_experiment(MAIN_JOB, ["pretrain.optimizer_steps=250"])
    assert find_pretrained(experiment) is None


def test_the_users_cache_comes_before_the_shipped_reference(monkeypatch, tmp_path):
    monkeypatch.setenv("DDRL_CACHE_DIR", str(tmp_path))
    experiment = load_experiment(MAIN_JOB)
    mine = tmp_path / find_pretrained(experiment).relative_to(SHIPPED)
    mine.mkdir(parents=True)
    (mine / "pretrain.json").write_text("{}")
    assert find_pretrained(experiment) == mine


def weights(folder):
    return {f"{file.name}/{k}": v for file in sorted(folder.rglob("*.safetensors")) for k, v in load_file(file).items()}


def test_pretraining_is_bitwise_reproducible(tiny_config, monkeypatch, tmp_path):
    """Same code, same key: the same weights, bit for bit (so a shipped reference is what
    `ddrl pretrain` makes for its config)."""
    experiment = load_experiment(str(tiny_config("none", "")))
    made = []
    for copy in ("first", "second"):
        monkeypatch.setenv("DDRL_CACHE_DIR", str(tmp_path / copy))
        made.append(weights(ensure_pretrained(experiment, load_registry(), show_progress=False)))
    assert made[0].keys() == made[1].keys() and len(made[0]) > 10
    assert all(torch.equal(made[0][k], made[1][k]) for k in made[0])


@pytest.mark.slow
def test_the_shipped_classifier_is_the_one_its_training_makes():
    """15 s: the digits CNN trained from scratch equals the shipped file up to float rounding (the
    thread count changes the order of sums: 1.6e-5 at most between 1 and 2 threads), and
    classifies every held-out digit the same way."""
    from ddrl_plugins.data.sklearn_digits import SklearnDigits
    from ddrl_plugins.shared.digits_classifier import VERSION, DigitsCNN, train_classifier

    shipped = load_file(SHIPPED / f"digits-classifier-v{VERSION}.safetensors")
    trained = train_classifier()
    assert shipped.keys() == trained.state_dict().keys()
    assert max(float((shipped[k] - v).abs().max()) for k, v in trained.state_dict().items()) < 1e-3
    loaded = DigitsCNN()
    loaded.load_state_dict(shipped)
    held = SklearnDigits().held_out().x0
    with torch.no_grad():
        assert torch.equal(loaded.eval()(held).argmax(1), trained.eval()(held).argmax(1))
