"""`ddrl new-plugin ROLE NAME`: each role's package installs, is found through its entry point,
and passes its own tests (the role's contract suite on the generated component)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ddrl_framework.cli import main
from ddrl_framework.roles import ROLES

# the role's contract suite, plus the generated test of the component's own option
# 3 sampler checks skip on the scaffold's pixel policy (among them the pipeline-fidelity check)
PASSED = {"policy": "21 passed, 1 skipped", "sampler": "9 passed, 3 skipped", "reward": "7 passed",
          "regularizer": "5 passed", "data": "7 passed", "metric": "6 passed",
          "logger": "7 passed"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every role's package, written by `ddrl new-plugin` and pip-installed into a target folder
    (the test environment is left as it was)."""
    root = tmp_path_factory.mktemp("scaffold")
    folders = {}
    for role in ROLES:
        folders[role] = root / f"ddrl-my-{role}"
        assert main(["new-plugin", role, f"my-{role}", "--directory", str(folders[role])]) == 0
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), *map(str, folders.values())], check=True)
    return folders, site


def test_a_package_has_every_file(tmp_path, capsys):
    assert main(["new-plugin", "reward", "center-mass", "--directory", str(tmp_path / "pkg")]) == 0
    files = sorted(str(p.relative_to(tmp_path / "pkg")) for p in (tmp_path / "pkg").rglob("*") if p.is_file())
    assert files == [".github/workflows/test.yml", ".gitignore", "README.md", "ddrl_center_mass.py",
                     "pyproject.toml", "tests/test_ddrl_center_mass.py"]
    pyproject = (tmp_path / "pkg" / "pyproject.toml").read_text()
    assert '[project.entry-points.ddrl_framework]\ncenter-mass = "ddrl_center_mass"' in pyproject
    assert 'name = "ddrl-center-mass"' in pyproject
    assert "class TestCenterMass(RewardModelContract):" in (tmp_path / "pkg" / "tests" / "test_ddrl_center_mass.py").read_text()
    assert '[[rewards]]\nname = "center-mass"' in (tmp_path / "pkg" / "README.md").read_text()


@pytest.mark.parametrize("args,message", [
    (["reward", "Center_Mass"], "'Center_Mass' cannot be a plugin name: use lower-case letters"),
    (["reward", "brightness"], "reward model 'brightness' of plugin 'brightness' (ddrl-framework 0.1.0) already exists"),
    (["sampler", "ddim-sde"], "sampler 'ddim-sde' of plugin 'ddim-sde' (ddrl-framework 0.1.0) already exists"),
])
def test_a_bad_or_taken_name_is_refused(tmp_path, capsys, args, message):
    assert main(["new-plugin", *args, "--directory", str(tmp_path / "pkg")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "pkg").exists()


def test_a_folder_that_is_not_empty_is_left_alone(tmp_path, capsys):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mine.txt").write_text("keep me")
    assert main(["new-plugin", "metric", "sharpness", "--directory", str(tmp_path / "pkg")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "pkg").iterdir()] == ["mine.txt"]


@pytest.mark.slow
def test_every_generated_package_is_found_through_its_entry_point(generated):
    _, site = generated
    result = subprocess.run([sys.executable, "-m", "ddrl_framework", "plugins"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stdout + result.stderr
    for role in ROLES:
        line = next(l for l in result.stdout.splitlines() if l.split()[0] == f"my-{role}")
        assert f"plugin my-{role}" in line and f"ddrl-my-{role} 0.1.0" in line


@pytest.mark.slow
@pytest.mark.parametrize("role", list(ROLES))
def test_every_generated_package_passes_its_tests(generated, role):
    folders, site = generated
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            capture_output=True, text=True, cwd=folders[role],
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSED[role] in result.stdout and "failed" not in result.stdout
