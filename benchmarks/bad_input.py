"""How each kind of bad input is reported on an empty cache: the exit code, the seconds to the
message (each a fresh `ddrl` process) and the message's first line. Every case should exit 2
before any work; one that runs past `--timeout` seconds has reached work (pretraining) and is
marked so.

    python benchmarks/bad_input.py [--config CONFIG] [--timeout 60] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_CONFIG

# name: (command, extra arguments); "{tmp}" is a scratch folder
CASES = {
    "unknown reward": ("train", ["--set", "rewards.0.name=centre-mass"]),
    "unknown sampler": ("train", ["--set", "sampler.name=ddim"]),
    "negative beta": ("train", ["--arm", "forward-kl-data", "--beta", "-1.0"]),
    "regularizer option, no [regularizer]": ("train", ["--arm", "forward-kl-data", "--set", "regularizer.beta=-1.0"]),
    "negative eta": ("train", ["--set", "sampler.eta=-0.5"]),
    "sampler.denoising_steps = 0": ("train", ["--set", "sampler.denoising_steps=0"]),
    "trained step out of range": ("train", ["--set", "train.trained_denoising_steps=[1, 99]"]),
    "train.groups = 0": ("train", ["--set", "train.groups=0"]),
    "learning_rate = nan": ("train", ["--set", "train.learning_rate=nan"]),
    "iterations = -5": ("train", ["--set", "train.iterations=-5"]),
    "clip_range = -0.2": ("train", ["--set", "train.clip_range=-0.2"]),
    "flow-sde on the digits UNet": ("train", ["--set", "sampler.name=flow-sde"]),
    "key typo": ("train", ["--set", "train.groupz=3"]),
    "renamed key": ("train", ["--set", "sampler.steps=5"]),
    "misspelled arm": ("train", ["--arm", "forward-kl"]),
    "output_dir is a file": ("train", ["--set", "output_dir={tmp}/a-file"]),
    "binary config file": ("train", []),
    "unknown metric (pretrain)": ("pretrain", ["--set", "metrics=[{name='fid'}]"]),
    "allow-list entry matching nothing": ("train", []),
    "unknown key in a [[compare.arms]]": ("train", ["--set", "compare.arms=[{name='none', regularizer={name='none'}, betaz=[1.0]}]"]),
    "compare on a file with no [compare]": ("compare", []),
    "compare.seeds = []": ("compare", ["--set", "compare.seeds=[]"]),
    "train.group_size = 1": ("train", ["--set", "train.group_size=1"]),
}


def argv(name: str, command: str, extra: list[str], config: str, tmp: Path) -> list[str]:
    if name == "binary config file":
        config = str(tmp / "binary.toml")
    if name == "compare on a file with no [compare]":
        config = str(tmp / "no-compare.toml")
    args = [a.replace("{tmp}", str(tmp)) for a in extra]
    return [sys.executable, "-m", "ddrl_framework", command, config, "--quiet",
            "--set", f"output_dir={tmp}/run", *args]


def environment(name: str, tmp: Path) -> dict[str, str]:
    env = {**os.environ, "DDRL_CACHE_DIR": str(tmp / "empty-cache")}
    if name == "allow-list entry matching nothing":
        env["DDRL_PLUGINS"] = "brightnes"
    return env


def run(name: str, command: str, extra: list[str], config: str, tmp: Path, timeout: float) -> tuple[str, float, str]:
    began = time.perf_counter()
    try:
        done = subprocess.run(argv(name, command, extra, config, tmp), env=environment(name, tmp),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "-", time.perf_counter() - began, f"still running after {timeout:.0f} s: reached work"
    message = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return str(done.returncode), time.perf_counter() - began, message[0] if message else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    print(f"{'case':<36}{'exit':>5}{'s':>7}  message")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "a-file").write_text("not a folder")
        (tmp / "binary.toml").write_bytes(bytes(range(256)))
        text = Path(args.config).read_text()
        (tmp / "no-compare.toml").write_text(text.split("[compare]")[0])
        for name, (command, extra) in CASES.items():
            if args.only not in name:
                continue
            code, seconds, message = run(name, command, extra, args.config, tmp, args.timeout)
            print(f"{name:<36}{code:>5}{seconds:>7.2f}  {message[:110]}")


if __name__ == "__main__":
    main()
