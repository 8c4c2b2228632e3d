"""`ddrl new-plugin ROLE NAME`: each role's package installs, is found through its entry point,
and passes its own tests (the role's contract suite on the generated component); with
`--diffusers PIPELINE`, a backbone of that pipeline, which samples as the pipeline does."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddrl_framework.cli import main
from ddrl_framework.registry import load_registry
from ddrl_framework.roles import ROLES
from ddrl_framework.scaffold.diffusers_backbones import RECIPES
from ddrl_framework.testing.pipeline_fidelity import check_matches_pipeline

# the role's contract suite, plus the generated test of the component's own option
# 3 sampler checks skip on the scaffold's pixel policy (among them the pipeline-fidelity check)
PASSED = {"policy": "21 passed, 1 skipped", "sampler": "9 passed, 3 skipped", "reward": "7 passed",
          "regularizer": "5 passed", "data": "7 passed", "metric": "6 passed",
          "logger": "7 passed",
          # a backbone: both contract suites, the fidelity check at guidance 1 and 3, doctor on its tiny config
          "backbone": "24 passed"}
BACKBONE = ["policy", "my-pixart", "--diffusers", "PixArtSigmaPipeline"]  # a pipeline the framework does not ship


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Every role's package, written by `ddrl new-plugin` and pip-installed into a target folder
    (the test environment is left as it was)."""
    root = tmp_path_factory.mktemp("scaffold")
    folders = {}
    for role in ROLES:
        folders[role] = root / f"ddrl-my-{role}"
        assert main(["new-plugin", role, f"my-{role}", "--directory", str(folders[role])]) == 0
    folders["backbone"] = root / "ddrl-my-pixart"
    assert main(["new-plugin", *BACKBONE, "--directory", str(folders["backbone"])]) == 0
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
@pytest.mark.parametrize("role", [*ROLES, "backbone"])
def test_every_generated_package_passes_its_tests(generated, role):
    folders, site = generated
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            capture_output=True, text=True, cwd=folders[role],
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert PASSED[role] in result.stdout and "failed" not in result.stdout


def test_a_backbone_package_has_its_implementation_tests_and_tiny_config(tmp_path):
    folder = tmp_path / "pkg"
    assert main(["new-plugin", *BACKBONE, "--directory", str(folder)]) == 0
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [".github/workflows/test.yml", ".gitignore", "README.md", "ddrl_my_pixart.py",
                     "ddrl_my_pixart_pipeline.py", "my-pixart-tiny.toml", "pyproject.toml",
                     "tests/test_ddrl_my_pixart.py"]
    assert 'py-modules = ["ddrl_my_pixart", "ddrl_my_pixart_pipeline"]' in (folder / "pyproject.toml").read_text()
    hook = (folder / "ddrl_my_pixart.py").read_text()
    assert 'register("my-pixart", "ddrl_my_pixart_pipeline:build_my_pixart", forward_process="ddpm")' in hook
    assert "class MyPixart(DiffusersPolicy):" in (folder / "ddrl_my_pixart_pipeline.py").read_text()
    assert "[[compare.arms]]" in (folder / "my-pixart-tiny.toml").read_text()


def generated_backbone(tmp_path: Path, pipeline: str, planted: tuple[str, str] | None = None):
    """The implementation module `new-plugin policy my-backbone --diffusers PIPELINE` writes, imported
    from its file (``planted``: a text replacement made first, a bug)."""
    folder = tmp_path / pipeline
    assert main(["new-plugin", "policy", "my-backbone", "--diffusers", pipeline, "--directory", str(folder)]) == 0
    path = folder / "ddrl_my_backbone_pipeline.py"
    if planted is not None:
        text = path.read_text()
        assert planted[0] in text
        path.write_text(text.replace(*planted))
    spec = importlib.util.spec_from_file_location(f"generated_{pipeline}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sampler_of(recipe, steps: int = 4):
    return load_registry().build("sampler", recipe.sampler, {"denoising_steps": steps}, "[sampler]")


@pytest.mark.parametrize("pipeline", sorted(RECIPES))
def test_every_known_pipelines_backbone_samples_as_its_pipeline(tmp_path, pipeline):
    module = generated_backbone(tmp_path, pipeline)
    for guidance_scale in (1.0, 3.0):
        check_matches_pipeline(module.build_my_backbone(guidance_scale=guidance_scale), sampler_of(RECIPES[pipeline]))


def test_a_planted_timestep_bug_in_a_generated_backbone_fails_its_fidelity_check(tmp_path):
    planted = ('{"hidden_states": x_t, "timestep": t,', '{"hidden_states": x_t, "timestep": t / 1000,')
    module = generated_backbone(tmp_path, "PixArtSigmaPipeline", planted)
    with pytest.raises(AssertionError, match="one denoiser call differs from PixArtSigmaPipeline.__call__"):
        check_matches_pipeline(module.build_my_backbone(), sampler_of(RECIPES["PixArtSigmaPipeline"]))


def test_a_generated_ddpm_backbone_clips_only_where_its_pipelines_scheduler_does(tmp_path):
    """Real PixArt-Sigma folders sample with DPM-Solver, which has no clip_sample: no clipping, where
    DDPMScheduler's own default would clip x0."""
    from diffusers import DPMSolverMultistepScheduler

    module = generated_backbone(tmp_path, "PixArtSigmaPipeline")
    pipeline = module.tiny_pipeline()
    pipeline.scheduler = DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    assert "clip_sample" not in pipeline.scheduler.config  # DDPMScheduler.from_config would default it to True
    assert module.forward_process(pipeline).clip_sample is False


@pytest.mark.parametrize("args,message", [
    (["policy", "my-x", "--diffusers", "FluxPipline"],
     "has no class 'FluxPipline' (did you mean FluxPipeline"),
    (["policy", "my-x", "--diffusers", "SanaPipeline"],
     "the scaffold does not know SanaPipeline (how it encodes text"),
    (["reward", "my-x", "--diffusers", "PixArtSigmaPipeline"], "--diffusers writes a policy"),
])
def test_a_pipeline_the_scaffold_cannot_write_is_refused(tmp_path, capsys, args, message):
    assert main(["new-plugin", *args, "--directory", str(tmp_path / "pkg")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "pkg").exists()
