"""The report's extra sections (comparison/gallery.py) on a hand-made comparison folder: every
evaluation metric per setting with its change, and the gallery of the same prompts and noise."""

import json

import torch
from PIL import Image

from ddrl_framework.comparison.report import write_report
from ddrl_framework.evaluation.plots import save_grid


def make_comparison(folder, video=False):
    arms = ["none", "forward-kl-data"]
    runs = [{"name": f"{arm}-seed0", "dir": f"runs/{arm}-seed0", "arm": arm, "beta": None, "seed": 0} for arm in arms]
    manifest = {"config": "x.toml", "compare": {"seeds": [0], "arms": [{"name": a} for a in arms]}, "runs": runs}
    (folder / "compare.json").write_text(json.dumps(manifest))
    shape = (4, 3, 3, 8, 8) if video else (4, 3, 8, 8)
    for i, run in enumerate(runs):
        path = folder / run["dir"]
        path.mkdir(parents=True)
        evals = [{"iteration": 0, "reward_mean": 0.5, "saturation": 0.2, "seconds": 1.0, "class_3": 0.1},
                 {"iteration": 2, "reward_mean": 0.7, "saturation": 0.2 + 0.5 * (i == 0), "seconds": 1.0,
                  "class_3": 0.2}]
        (path / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
        (path / "metrics.jsonl").write_text(json.dumps({"iteration": 0, "reward_mean": 0.5, "seconds": 1.0}) + "\n")
        # the metric that reported class_3 declares it summarized by class_entropy
        (path / "config.json").write_text(json.dumps({"experiment": {"metrics": [{"name": "diversity"}]}}))
        save_grid(torch.full(shape, 0.5), path / "samples_start.png")
        save_grid(torch.full(shape, 0.9 if i == 0 else 0.5), path / "samples_final.png")
    return folder


def test_every_metric_is_a_row_with_its_change(tmp_path):
    report = write_report(make_comparison(tmp_path)).read_text()
    table = report.split("## Every evaluation metric")[1].split("\n## ")[0]
    assert "| metric | none | forward-kl-data |" in table
    assert "| saturation | 0.7 (Δ 0.5) | 0.2 (Δ 0) |" in table  # the over-saturated arm stands out
    assert "| seconds |" not in table and "| iteration |" not in table
    assert "| class_3 |" not in table  # the per-class fractions are summarized by class_entropy


def test_a_label_with_beta_is_drawn_with_the_word():
    """PIL's default font has no Greek letters: the gallery writes "beta", not an empty box."""
    from ddrl_framework.comparison.gallery import _labelled

    image = Image.new("RGB", (8, 8), "white")
    greek, word = _labelled(image, "reverse-kl β=0.01"), _labelled(image, "reverse-kl beta=0.01")
    assert greek.tobytes() == word.tobytes()


def test_the_gallery_stacks_the_reference_and_each_arm(tmp_path):
    report = write_report(make_comparison(tmp_path)).read_text()
    assert "![gallery](gallery.png)" in report and ".gif" not in report.split("## Gallery")[1].split("\n## ")[0]
    with Image.open(tmp_path / "runs" / "none-seed0" / "samples_final.png") as grid, \
            Image.open(tmp_path / "gallery.png") as gallery:
        assert gallery.height == 3 * (grid.height + 4)  # reference, none, forward-kl-data


def test_videos_get_their_gifs_in_the_gallery(tmp_path):
    report = write_report(make_comparison(tmp_path, video=True)).read_text()
    gallery = report.split("## Gallery")[1].split("\n## ")[0]
    assert "![none](runs/none-seed0/samples_final.gif)" in gallery
    assert "![reference (start)](runs/none-seed0/samples_start.gif)" in gallery
