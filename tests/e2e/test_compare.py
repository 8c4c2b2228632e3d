"""`ddrl compare` and `ddrl report` end to end on a tiny comparison."""

import json

import pytest
from PIL import Image

from ddrl_framework.cli import main
from ddrl_framework.comparison.compare import load_compare
from ddrl_framework.errors import UserError

COMPARISON = """
[[metrics]]
name = "frechet-distance"

[[metrics]]
name = "frechet-distance"
weighting = "exp-tilt"
temperature = 0.05
key = "fd_tilt"

[[metrics]]
name = "drift"

[compare]
seeds = [0, 1]
evaluation_repeats = 2
common_target = "fd_tilt"
targets = [{{name = "data"}}, {{name = "bright", weighting = "exp-tilt", temperature = 0.05}}]
jobs = {jobs}

[[compare.arms]]
name = "none"
regularizer = {{name = "none"}}

[[compare.arms]]
name = "reverse-kl"
regularizer = {{name = "reverse-kl"}}
betas = [0.01, 0.1]
own_target = "fd_tilt"
"""


@pytest.fixture
def comparison(tiny_config):
    def write(jobs=1):
        path = tiny_config("none", "", name="cmp")
        text = path.read_text().replace('[regularizer]\nname = "none"\n', "")
        text = text.replace("iterations = 3", "iterations = 2").replace("grid_samples = 4", "grid_samples = 4\neval_every = 1\neval_samples = 24")
        path.write_text(text + COMPARISON.format(jobs=jobs))
        return path
    return write


def test_every_arm_beta_and_seed_becomes_a_validated_run(comparison):
    base, compare, runs = load_compare(comparison(), ["train.iterations=5"])
    assert base.regularizer.name == "none" and base.output_dir.endswith("cmp")
    assert [(a.name, a.betas) for a in compare.arms] == [("none", ()), ("reverse-kl", (0.01, 0.1))]
    assert [r.name for r in runs] == ["none-seed0", "none-seed1", "reverse-kl-beta0.01-seed0",
                                      "reverse-kl-beta0.01-seed1", "reverse-kl-beta0.1-seed0",
                                      "reverse-kl-beta0.1-seed1"]
    assert runs[3].experiment.regularizer.options == {"beta": 0.01}
    assert runs[3].experiment.seed == 1 and runs[3].experiment.train.iterations == 5
    assert runs[3].experiment.output_dir.endswith("cmp/runs/reverse-kl-beta0.01-seed1")


def test_a_bad_arm_is_reported_before_anything_runs(comparison, tmp_path):
    path = comparison()
    path.write_text(path.read_text().replace('betas = [0.01, 0.1]', 'betas = [0.01]\nset = ["train.grops=2"]'))
    with pytest.raises(UserError, match=r"(?s)arm .reverse-kl.*extra fields found \(grops\)"):
        load_compare(path)
    assert not (tmp_path / "cmp").exists()


@pytest.mark.slow
def test_compare_runs_reports_and_never_reruns_a_finished_run(comparison, capsys):
    path = comparison()
    folder = path.parent / "cmp"
    # one run trained alone first (`ddrl train --arm`): compare finds it finished and keeps it
    assert main(["train", str(path), "--arm", "reverse-kl", "--beta", "0.1", "--quiet"]) == 0
    alone = (folder / "runs" / "reverse-kl-beta0.1-seed0" / "metrics.jsonl").read_bytes()
    assert main(["compare", str(path), "--quiet"]) == 0
    assert (folder / "runs" / "reverse-kl-beta0.1-seed0" / "metrics.jsonl").read_bytes() == alone
    report = (folder / "report.md").read_text()
    for setting in ("| none | 2 |", "| reverse-kl β=0.01 nats | 2 |", "| reverse-kl β=0.1 nats | 2 |"):
        assert setting in report
    assert "Evaluation noise" in report and "| bright | exp-tilt T=0.05 |" in report
    assert "| policy | unet2d | unet2d | ddrl-framework 0.1.0 | all |" in report  # who provided what
    assert "| regularizer | reverse-kl | reverse-kl | ddrl-framework 0.1.0 | reverse-kl-beta0.01-seed0," in report
    for png in ("reward.png", "fidelity.png", "pareto.png"):
        Image.open(folder / png).verify()
    references = json.loads((folder / "references.json").read_text())
    assert len(references["evaluation_repeats"]) == 2
    assert references["targets"]["bright"]["values"]["reward_mean"] > references["targets"]["data"]["values"]["reward_mean"]
    metrics = (folder / "runs" / "none-seed0" / "metrics.jsonl").read_bytes()
    # finished runs are skipped; a longer budget resumes each run where it stopped
    assert main(["compare", str(path), "--quiet", "--set", "train.iterations=3"]) == 0
    longer = (folder / "runs" / "none-seed0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["iteration"] for l in longer] == [0, 1, 2]
    assert "\n".join(longer[:2]) + "\n" == metrics.decode()
    (folder / "report.md").unlink()
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.md").is_file()


@pytest.mark.slow
def test_runs_side_by_side_in_processes(comparison):
    path = comparison(jobs=2)
    path.write_text(path.read_text().replace("seeds = [0, 1]", "seeds = [0]"))
    assert main(["compare", str(path), "--quiet"]) == 0
    runs = path.parent / "cmp" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["none-seed0", "reverse-kl-beta0.01-seed0",
                                                      "reverse-kl-beta0.1-seed0"]
    assert all((p / "checkpoints" / "latest").read_text() == "iter-000002" for p in runs.iterdir())


def test_the_report_lists_each_components_plugin_and_flags_one_that_differs(tmp_path):
    from ddrl_framework.comparison.report import write_report

    runs = []
    for name, dist in (("none-seed0", "ddrl-mass-a"), ("none-seed1", "ddrl-mass-b")):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        (run / "eval.jsonl").write_text(json.dumps({"iteration": 0, "reward_mean": 0.5, "seconds": 1.0}) + "\n")
        (run / "metrics.jsonl").write_text(json.dumps({"iteration": 0, "reward_mean": 0.5, "seconds": 1.0}) + "\n")
        reward = {"name": "center-mass", "plugin": "mass", "distribution": dist, "version": "0.1.0"}
        (run / "config.json").write_text(json.dumps({"components": {"rewards": [reward]}}))
        runs.append({"name": name, "arm": "none", "beta": None, "seed": int(name[-1]), "dir": f"runs/{name}"})
    (tmp_path / "compare.json").write_text(json.dumps(
        {"config": "x.toml", "compare": {"seeds": [0, 1], "arms": [{"name": "none"}]}, "runs": runs}))
    report = write_report(tmp_path).read_text()
    assert "| rewards | center-mass | mass | ddrl-mass-a 0.1.0 (differs across runs) | none-seed0 |" in report
    assert "| rewards | center-mass | mass | ddrl-mass-b 0.1.0 (differs across runs) | none-seed1 |" in report


def test_report_of_a_folder_without_a_comparison_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no compare.json" in capsys.readouterr().err


def test_pairs_and_metrics_are_checked_before_anything_runs(comparison, tmp_path):
    path = comparison()
    text = path.read_text()
    path.write_text(text.replace("jobs = 1", 'jobs = 1\npairs = [["none", "reverse-kl"]]'))
    with pytest.raises(UserError, match=r"'reverse-kl': several settings; add @beta.*reverse-kl@0.01"):
        load_compare(path)
    path.write_text(text.replace("jobs = 1", 'jobs = 1\npairs = [["none", "reverse-kl@0.1"]]'))
    assert load_compare(path)[1].pairs == (("none", "reverse-kl@0.1"),)
    path.write_text(text.replace("jobs = 1", 'jobs = 1\nmetrics = [{key = "drift_kl", margin = 1.0}]'))
    with pytest.raises(UserError, match=r"compare.metrics entry 'drift_kl' has no declared direction"):
        load_compare(path)
    assert not (tmp_path / "cmp").exists()
