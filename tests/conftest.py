from __future__ import annotations

import functools
from pathlib import Path

import pytest

from ddrl_framework.registry import Registry, load_registry
from ddrl_framework.roles import ROLES

ROOT = Path(__file__).resolve().parents[1]  # the repository
CONFIGS = ROOT / "configs"


@functools.cache
def registry() -> Registry:
    """The installed plugins' registry, loaded once for the whole session."""
    return load_registry()


def build(role: str, name: str, **options):
    """A component as an experiment builds it, its messages naming the role's table."""
    return registry().build(role, name, options, ROLES[role].table)

TINY_CONFIG = """
seed = 0
output_dir = "{output_dir}"

[policy]
name = "unet2d"
block_out_channels = [8, 16]
norm_num_groups = 4

[sampler]
name = "ddim-sde"
denoising_steps = 4
eta = 1.0

[[rewards]]
name = "brightness"

[regularizer]
name = "{regularizer}"
{regularizer_options}

[data]
name = "sklearn-digits"

[pretrain]
optimizer_steps = 30
batch_size = 32

[train]
iterations = 3
groups = 2
group_size = 4
grid_samples = 4
checkpoint_every = 2
device = "cpu"
"""


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory):
    """Pretrained references go to a per-session cache, never the user's (session-scoped, so that
    module-scoped fixtures use it too)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DDRL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    yield
    patch.undo()


@pytest.fixture
def tiny_config(tmp_path):
    """Write a tiny digits experiment; returns a function(regularizer, options) -> Path."""

    def write(regularizer: str = "forward-kl-data", options: str = "beta = 0.01",
              name: str = "run") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY_CONFIG.format(output_dir=tmp_path / name, regularizer=regularizer,
                                           regularizer_options=options))
        return path

    return write


TINY_COMPARE = """
[compare]
seeds = [0, 1]

[[compare.arms]]
name = "none"
regularizer = {name = "none"}

[[compare.arms]]
name = "reverse-kl"
regularizer = {name = "reverse-kl"}
betas = [0.01, 0.1]

[[compare.arms]]
name = "data"
regularizer = {name = "forward-kl-data"}
betas = [0.05]
set = ["train.advantage_normalization=raw", "pretrain.seed=1"]
"""


@pytest.fixture
def tiny_compare_config(tiny_config):
    """``tiny_config``'s experiment (forward-kl-data, beta 0.01) plus a ``[compare]`` table: seeds
    0 and 1; arms ``none``, ``reverse-kl`` (betas 0.01 and 0.1) and ``data`` (forward-kl-data,
    beta 0.05, raw advantages, its own pretraining seed). Returns a function(name) -> Path."""

    def write(name: str = "cmp") -> Path:
        path = tiny_config(name=name)
        path.write_text(path.read_text() + TINY_COMPARE)
        return path

    return write
