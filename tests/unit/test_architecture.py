"""The folders show the layers and import-linter keeps them true: the contracts in pyproject.toml
(the core's layers, the core never importing the built-ins, plugin roles independent, plugins
below the running layer) hold, and a change that breaks one fails this test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(folder / "pyproject.toml"), "--no-cache"],
                          cwd=folder, capture_output=True, text=True, timeout=300)


def copy_of_the_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "ddrl_framework", tmp_path / "ddrl_framework",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "plugins", tmp_path / "ddrl_plugins", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module, line, broken", [
    ("ddrl_framework/kit/io.py", "from ddrl_framework.running import trainer", "The core's layers"),
    ("ddrl_framework/running/trainer.py", "from ddrl_plugins.samplers import ddim_sde", "never imports the built-in"),
    ("ddrl_plugins/rewards/brightness.py", "from ddrl_plugins.data import sklearn_digits", "another role"),
    ("ddrl_plugins/metrics/digits_metrics.py", "from ddrl_framework.running import trainer", "below the running"),
    ("ddrl_framework/types.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ddrl_framework.protocols import Policy",
     "The core's layers"),  # an annotation-only import counts: types.py is below the protocols
    ("ddrl_framework/denoising.py", "from ddrl_framework.contexts import StepContext", "The core's layers"),
])
def test_a_broken_layer_fails_the_contracts(tmp_path, module, line, broken):
    tree = copy_of_the_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    assert broken in result.stdout and "BROKEN" in result.stdout, result.stdout


@pytest.mark.slow
def test_the_package_builds_without_a_setuptools_warning_and_ships_its_data(tmp_path):
    """Every folder that holds package data is a listed package (else setuptools warns on every
    install), and the wheel carries the templates and the shipped results."""
    import zipfile

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(root),
                           "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stdout + done.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist()
    assert "ddrl_framework/scaffold/templates/policy.py.tmpl" in names
    assert "ddrl_framework/shipped/digits-classifier-v1.safetensors" in names
    assert any(n.endswith("unet/diffusion_pytorch_model.safetensors") for n in names)
