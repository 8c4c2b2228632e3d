"""The benchmark scripts run and print their tables (on a tiny config; no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize("script,args,expected", [
    ("overhead.py", ["--rounds", "1"], "ratio "),
    ("regularizer_cost.py", ["--iterations", "1", "--rounds", "1", "--arms", "forward-kl-data"], "forward-kl-data "),
    ("throughput.py", ["--rounds", "1"], "of matmul"),
    ("scaling.py", ["--iterations", "2"], "ratio"),
    ("checkpoint_time.py", ["--rounds", "2"], "save s"),
    ("checkpoint_check.py", ["--device", "cpu", "--skip-large"], "Fsdp2 -> Ddp on cpu: weights equal"),
    ("startup.py", ["--rounds", "1"], "ratio to torch"),
    ("step_gradients.py", ["--rollouts", "1", "--arm", ""], "share, trained"),
    ("bad_input.py", ["--only", "key typo"], "key typo                                2"),
    ("solvable.py", ["--arms", "none", "--seeds", "0", "--set", "train.iterations=1"], "| none | - |"),
    ("fixed_points.py", ["--seeds", "0", "--set", "train.iterations=2", "--raw", "{tmp}/raw.jsonl", "--set",
                         "compare.arms=[{name='reverse-kl', regularizer={name='reverse-kl'}, betas=[0.5]}]"],
     "| reverse-kl | per-step loss"),
    ("main_job.py", ["--set", "train.iterations=1", "--set", "pretrain.optimizer_steps=2", "--set",
                     "train.eval_samples=16", "--set", "compare.arms=[{name = 'none', regularizer = {name = 'none'}}]"],
     "| total |"),
])
def test_benchmark_prints_its_table(tiny_config, tmp_path, script, args, expected):
    own_config = ("checkpoint_check.py", "fixed_points.py")  # sd3-tiny; the linear twin's file
    config = ["--config", str(tiny_config())] if script not in own_config else []
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *config, *args],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


@pytest.mark.slow
def test_metric_cost_prints_its_table():
    config = Path(__file__).parents[2] / "configs" / "sd-tiny.toml"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "metric_cost.py"), "--configs", str(config),
                             "--rounds", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "| evaluation rollout |" in result.stdout and "| clip-diversity |" in result.stdout
