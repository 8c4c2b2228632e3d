"""The tiny image and video configs run a three-arm `ddrl compare` end to end on the CPU, and the
report shows the hacking diagnostics of each arm beside the trained reward, with the gallery."""

import json
import math

import pytest

from ddrl_framework.cli import main
from tests.conftest import CONFIGS

IMAGE_KEYS = ["saturation", "colorfulness", "exposure_mean", "exposure_clipped_high", "contrast", "hf_energy",
              "fd_clip", "clip_prompt_diversity", "clip_diversity"]
VIDEO_KEYS = ["heldout_video_clip_score", "flicker", "frame_difference", "fd_clip_frame_diff", "clip_temporal_consistency"]
ARMS = ["none", "reverse-kl", "forward-kl-data"]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["sd", "sd3", "flux", "flux2-klein", "qwen-image", "wan", "wan22"])
def test_a_tiny_three_arm_comparison_reports_the_new_metrics(tmp_path, backbone):
    output = tmp_path / "cmp"
    argv = ["compare", str(CONFIGS / f"{backbone}-tiny.toml"), "--quiet", "--set", f"output_dir={output}",
            "--set", "train.iterations=2", "--set", "train.eval_every=0", "--set", "train.checkpoint_every=0",
            "--set", "compare.evaluation_repeats=1", "--set", "train.groups=1", "--set", "train.group_size=2"]
    assert main(argv) == 0
    keys = IMAGE_KEYS + (VIDEO_KEYS if backbone.startswith("wan") else ["heldout_jpeg_compressibility"])
    for arm in ARMS:
        last = json.loads((output / "runs" / f"{arm}-seed0" / "eval.jsonl").read_text().splitlines()[-1])
        assert last["iteration"] == 2
        assert all(math.isfinite(last[key]) for key in keys), {k: last.get(k) for k in keys}
        # two held-out prompts, two samples each: within-prompt diversity is its own number
        assert last["clip_prompt_diversity"] != last["clip_diversity"]
    report = (output / "report.md").read_text()
    table = report.split("## Every evaluation metric")[1].split("\n## ")[0]
    assert "| metric | none | reverse-kl | forward-kl-data |" in table
    for key in keys:
        assert f"| {key} | " in table, f"{key} missing from the report's metric table"
    assert (output / "gallery.png").is_file() and "![gallery](gallery.png)" in report
    assert ("samples_final.gif" in report) == backbone.startswith("wan")


@pytest.mark.slow
def test_the_tiny_comparison_judges_the_new_metrics_over_paired_seeds(tmp_path):
    """With two seeds the report's verdicts cover the CLIP-space FD and the held-out judge."""
    output = tmp_path / "cmp"
    argv = ["compare", str(CONFIGS / "sd3-tiny.toml"), "--quiet", "--set", f"output_dir={output}",
            "--set", "train.iterations=2", "--set", "train.eval_every=1", "--set", "train.checkpoint_every=0",
            "--set", "compare.evaluation_repeats=1", "--set", "train.groups=1", "--set", "train.group_size=2",
            "--set", "compare.seeds=[0, 1]"]
    assert main(argv) == 0
    verdicts = (output / "report.md").read_text().split("## Verdicts")[1].split("\n## ")[0]
    for key in ("fd_clip", "heldout_jpeg_compressibility"):
        assert f"| {key} (" in verdicts, f"{key} is not judged in the report's verdicts"
