"""Data tables beside [data] (issue 12's no-3s regime): ``classes`` of sklearn-digits, a reference
pretrained on other data (``[pretrain.data]``), an evaluation against other held-out data
(``[eval_data]``), and the FD to the held-out images of one digit."""

import json

import pytest
import torch

from ddrl_framework.cli import main
from ddrl_framework.contexts import EvalContext
from ddrl_framework.running.loader import load_experiment
from ddrl_framework.running.pretrain import pretrain_key, pretrained_dir
from ddrl_plugins.data.sklearn_digits import SklearnDigits
from ddrl_plugins.metrics.digits_metrics import FrechetDistance

NO_THREES = [0, 1, 2, 4, 5, 6, 7, 8, 9]


def test_classes_keep_only_those_digits_in_the_same_split():
    every, kept = SklearnDigits(), SklearnDigits(classes=NO_THREES)
    assert 3 not in kept.held_out().labels.tolist()
    assert 3 not in torch.cat([b.labels for b, _ in zip(kept.loader(256, 0), range(6))]).tolist()
    # the held-out images kept are those of the full split that are not 3s, in the same order
    full = every.held_out()
    assert torch.equal(kept.held_out().x0, full.x0[full.labels != 3])
    assert kept.num_train == int((every._split.labels[every._split.train] != 3).sum())


@pytest.mark.parametrize("bad", [[], [3, 3], [10]])
def test_bad_classes_are_refused(bad):
    with pytest.raises(ValueError, match="distinct digits 0-9"):
        SklearnDigits(classes=bad)


def test_the_pretraining_data_is_in_the_cache_key_whichever_table_names_it(tiny_config):
    config = tiny_config()
    plain = load_experiment(config)
    own = load_experiment(config, overrides=[f"pretrain.data={{name = 'sklearn-digits', classes = {NO_THREES}}}"])
    as_data = load_experiment(config, overrides=[f"data.classes={NO_THREES}"])
    assert own.pretrain.data.options == {"classes": NO_THREES}
    assert pretrain_key(own) == pretrain_key(as_data) != pretrain_key(plain)
    assert pretrained_dir(own) == pretrained_dir(as_data) != pretrained_dir(plain)


def test_pretraining_reads_pretrain_data_and_the_run_records_it(tiny_config, monkeypatch):
    """The reference sees [pretrain.data] only (no 3s); RL's [data] is every digit."""
    seen = []
    original = SklearnDigits._collate
    monkeypatch.setattr(SklearnDigits, "_collate", lambda self, p: seen.append(self.classes) or original(self, p))
    config = tiny_config()
    override = f"pretrain.data={{name = 'sklearn-digits', classes = {NO_THREES}}}"
    assert main(["pretrain", str(config), "--quiet", "--set", override]) == 0
    assert seen and set(seen) == {tuple(NO_THREES)}
    assert main(["train", str(config), "--quiet", "--set", override, "--set", "train.iterations=1"]) == 0
    recorded = json.loads((config.parent / "run" / "config.json").read_text())["experiment"]
    assert recorded["pretrain"]["data"] == {"name": "sklearn-digits", "classes": NO_THREES}
    assert recorded["data"] == {"name": "sklearn-digits"}


def _context(samples: torch.Tensor) -> EvalContext:
    class Context:  # what FrechetDistance reads of an EvalContext
        pass

    context = Context()
    context.samples, context.held_out = samples, SklearnDigits().held_out()
    return context


def test_the_fd_to_one_digit_compares_with_that_digits_held_out_images_only():
    held = SklearnDigits().held_out()
    threes, sevens = held.x0[held.labels == 3], held.x0[held.labels == 7]
    to_threes = FrechetDistance(digit=3)
    assert to_threes(_context(threes))["fd"] < 1e-3  # the same images: 0 up to round-off
    assert to_threes(_context(sevens))["fd"] > 10 * FrechetDistance()(_context(held.x0[:60]))["fd"]
    without_threes = _context(threes)
    without_threes.held_out = SklearnDigits(classes=NO_THREES).held_out()
    with pytest.raises(ValueError, match="digit = 3, but the held-out data has 0"):
        to_threes(without_threes)


def test_eval_data_gives_the_held_out_data_the_evaluation_compares_with(tiny_config):
    """[data] the reference's no-3 digits for the regularizer; [eval_data] the held-out 3s."""
    from ddrl_framework.registry import load_registry
    from ddrl_framework.running.components import build_components

    config = tiny_config()
    override = ["data.classes=" + str(NO_THREES), "eval_data={name = 'sklearn-digits', classes = [3]}",
                "metrics=[{name = 'frechet-distance', digit = 3}]"]
    experiment = load_experiment(config, overrides=override)
    assert main(["pretrain", str(config), "--quiet", *[a for o in override for a in ("--set", o)]]) == 0
    parts = build_components(experiment, load_registry(), torch.device("cpu"), show_progress=False)
    assert set(parts.held_out().labels.tolist()) == {3}
    assert 3 not in parts.data.held_out().labels.tolist()
    assert main(["train", str(config), "--quiet", "--set", "train.iterations=1", "--set", "train.eval_every=1",
                 *[a for o in override for a in ("--set", o)]]) == 0
    evals = [json.loads(line) for line in (config.parent / "run" / "eval.jsonl").read_text().splitlines()]
    assert evals and all(e["fd"] > 0 for e in evals)
    recorded = json.loads((config.parent / "run" / "config.json").read_text())["experiment"]
    assert recorded["eval_data"] == {"name": "sklearn-digits", "classes": [3]}
