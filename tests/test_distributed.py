"""Data parallelism under torchrun on CPU (gloo, 2 processes): the same metrics as one process,
resume, and the errors. Each test starts real ``torchrun`` jobs."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _torchrun(config, ranks, *extra):
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
               "--standalone", "-m", "ddrl_framework", "train", str(config), "--quiet", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _records(folder, name="metrics.jsonl"):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (folder / name).read_text().splitlines()]


def _close(a, b, rel=1e-4):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float):
            assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-6), key
        else:
            assert a[key] == b[key], key


def test_two_ranks_give_the_metrics_of_one(tiny_config):
    config = tiny_config()
    one = _torchrun(config, 1, "--set", f"output_dir={config.parent / 'one'}")
    two = _torchrun(config, 2, "--set", f"output_dir={config.parent / 'two'}")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    for name in ("metrics.jsonl", "eval.jsonl"):
        a, b = _records(config.parent / "one", name), _records(config.parent / "two", name)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            _close(x, y)
    assert two.stdout.count("metrics:") == 1  # rank 0 alone reports


def test_a_two_rank_run_resumes_exactly(tiny_config):
    config = tiny_config()
    straight = _torchrun(config, 2, "--set", f"output_dir={config.parent / 'straight'}")
    first = _torchrun(config, 2, "--set", f"output_dir={config.parent / 'resumed'}", "--set", "train.iterations=2")
    second = _torchrun(config, 2, "--set", f"output_dir={config.parent / 'resumed'}", "--resume")
    assert straight.returncode == first.returncode == second.returncode == 0, second.stderr[-2000:]
    assert _records(config.parent / "resumed") == _records(config.parent / "straight")


def test_groups_that_do_not_split_over_the_ranks_are_a_user_error(tiny_config):
    result = _torchrun(tiny_config(), 2, "--set", "train.groups=3")
    assert result.returncode != 0
    assert "train.groups = 3 does not split over 2 ranks" in result.stderr


def test_fsdp2_agrees_with_replicated_weights_and_resumes(tiny_config):
    config = tiny_config()
    runs = {
        "replicated": _torchrun(config, 2, "--set", f"output_dir={config.parent / 'replicated'}"),
        "fsdp2": _torchrun(config, 2, "--set", f"output_dir={config.parent / 'fsdp2'}", "--set", "train.sharding=fsdp2"),
        "part": _torchrun(config, 2, "--set", f"output_dir={config.parent / 'part'}", "--set", "train.sharding=fsdp2",
                          "--set", "train.iterations=2"),
    }
    runs["rest"] = _torchrun(config, 2, "--set", f"output_dir={config.parent / 'part'}", "--set", "train.sharding=fsdp2",
                             "--resume")
    assert all(r.returncode == 0 for r in runs.values()), [r.stderr[-1500:] for r in runs.values() if r.returncode]
    for x, y in zip(_records(config.parent / "replicated"), _records(config.parent / "fsdp2")):
        _close(x, y)
    assert _records(config.parent / "part") == _records(config.parent / "fsdp2")
