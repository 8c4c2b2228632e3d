"""Installed plugins as a user meets them: broken ones reported by `ddrl plugins` and refused by
every other command, misspelled hooks, the DDRL_PLUGINS allow-list, two distributions under one
name, string (lazy) factories, and which plugin provided each component of a run."""

from __future__ import annotations

import importlib
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from ddrl_framework.cli import _parser
from ddrl_framework.errors import PluginError, UserError
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.registry import ROLES, Registry, load_registry, make_plugin_manager

_serial = itertools.count()

CENTER_MASS = '''
import torch
from ddrl_framework.hookspecs import hookimpl

class CenterMass:
    def __call__(self, samples, prompts, metadata):
        return samples.float().flatten(1).mean(1) * {scale}

@hookimpl
def register_reward_models(register):
    register("center-mass", CenterMass)
'''


def install(site: Path, dist: str, entry: str, source: str, version: str = "0.1.0") -> str:
    """A distribution ``dist`` with the entry point ``entry`` -> a module holding ``source``,
    "installed" into the folder ``site`` (put it on sys.path / PYTHONPATH). Returns the module name."""
    module = f"fake_plugin_{next(_serial)}_{entry.replace('-', '_')}"
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ddrl_framework]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(source)
    return module


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    return folder


def _ddrl(args, site, **env):
    import os

    return subprocess.run([sys.executable, "-m", "ddrl_framework", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site), **env})


def test_the_cli_offers_every_role():
    assert [_parser().parse_args(["new-plugin", role, "x"]).role for role in ROLES] == list(ROLES)


def test_the_cli_reads_the_roles_without_importing_the_registry():
    code = ("import sys\nfrom ddrl_framework import cli\ncli._parser()\n"
            "print(sorted(m for m in ('torch', 'pluggy', 'ddrl_framework.registry') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_wrong_role_string_names_the_roles():
    with pytest.raises(PluginError, match="unknown role 'regularizers'. Did you mean 'regularizer'\\? The roles "
                       "\\(registry.ROLES\\): 'policy', 'sampler', 'reward', 'regularizer', 'data', 'metric', 'logger'."):
        load_registry().build("regularizers", "none", {}, "[regularizer]")


# --- broken plugins -------------------------------------------------------------------------
def test_a_misspelled_hook_names_the_plugin_the_hook_and_the_closest_one():
    class Typo:
        @hookimpl
        def register_reward_model(self, register):  # missing "s"
            pass

    manager = make_plugin_manager()
    manager.register(Typo(), name="typo")
    with pytest.raises(PluginError) as error:
        Registry(manager)
    assert ("plugin 'typo' implements 'register_reward_model', which is not a hook. Did you mean "
            "'register_reward_models'?") in str(error.value)
    assert "DDRL_PLUGINS" in str(error.value) and "ddrl plugins" in str(error.value)


@pytest.mark.slow
def test_plugins_lists_a_broken_plugin_and_train_refuses_to_run(tmp_path, tiny_config):
    site = tmp_path / "site"
    site.mkdir()
    install(site, "ddrl-typo", "typo", "from ddrl_framework.hookspecs import hookimpl\n\n@hookimpl\n"
            "def register_reward_model(register):\n    pass\n")
    listing = _ddrl(["plugins"], site)
    assert listing.returncode == 1 and "Traceback" not in listing.stderr
    assert "unet2d" in listing.stdout  # the components that did load are listed first
    broken = listing.stdout.split("broken plugins")[1]
    assert "typo: plugin 'typo' implements 'register_reward_model', which is not a hook. Did you mean " \
           "'register_reward_models'?" in broken
    assert "uninstall ddrl-typo" in broken and "DDRL_DISABLE_PLUGIN_AUTOLOAD=1" in broken
    train = _ddrl(["train", str(tiny_config()), "--quiet"], site)
    assert train.returncode == 2 and "Traceback" not in train.stderr
    assert "register_reward_model" in train.stderr and "`ddrl plugins`" in train.stderr
    assert _ddrl(["plugins"], site, DDRL_PLUGINS="").returncode == 0  # excluded: nothing broken is loaded


def test_a_plugin_raising_in_its_hook_is_listed_not_fatal_without_strict(site):
    install(site, "ddrl-boom", "boom", "from ddrl_framework.hookspecs import hookimpl\n\n@hookimpl\n"
            "def register_samplers(register):\n    raise RuntimeError('boom')\n")
    registry = load_registry(strict=False)
    assert "ddim-sde" in registry.names("sampler")
    assert [p.plugin for p in registry.problems] == ["boom"]
    assert "plugin 'boom' raised in register_samplers: RuntimeError: boom" in registry.problems[0].message
    with pytest.raises(PluginError, match="plugin 'boom' raised in register_samplers"):
        load_registry()


# --- the allow-list -------------------------------------------------------------------------
def test_an_allow_list_entry_matching_nothing_is_an_error_with_a_did_you_mean(site):
    install(site, "ddrl-my-plugins", "my-plugins", CENTER_MASS.format(scale=1))
    with pytest.raises(PluginError, match="DDRL_PLUGINS names 'my-plugin', which matches no installed "
                       "plugin .*Did you mean 'my-plugins'?"):
        load_registry(env={"DDRL_PLUGINS": "my-plugin"})
    assert "center-mass" in load_registry(env={"DDRL_PLUGINS": "my-plugins"}).names("reward")
    assert "center-mass" in load_registry(env={"DDRL_PLUGINS": "ddrl-my-plugins"}).names("reward")  # by distribution


def test_a_component_of_a_plugin_left_out_says_how_to_allow_it(site):
    install(site, "ddrl-mass", "mass", CENTER_MASS.format(scale=1))
    registry = load_registry(env={"DDRL_PLUGINS": "brightness"})
    with pytest.raises(PluginError) as error:
        registry.get("reward", "center-mass", "x.toml: [[rewards]] #1 name")
    assert ("x.toml: [[rewards]] #1 name: unknown reward model 'center-mass'. ") in str(error.value)
    assert ("It is registered by plugin 'mass' (ddrl-mass 0.1.0), which is installed but not loaded: "
            "DDRL_PLUGINS=brightness does not name it. Allow it (DDRL_PLUGINS=mass)") in str(error.value)
    autoload_off = load_registry(env={"DDRL_DISABLE_PLUGIN_AUTOLOAD": "1"})
    with pytest.raises(PluginError, match="not loaded: DDRL_DISABLE_PLUGIN_AUTOLOAD is set"):
        autoload_off.get("reward", "center-mass")


def test_two_distributions_under_one_plugin_name_are_an_error_unless_one_is_picked(site):
    install(site, "ddrl-mass-a", "mass", CENTER_MASS.format(scale=1))
    install(site, "ddrl-mass-b", "mass", CENTER_MASS.format(scale=2))
    with pytest.raises(PluginError, match="plugin name 'mass' is provided by two distributions, "
                       "ddrl-mass-(a|b) 0.1.0 and ddrl-mass-(a|b) 0.1.0"):
        load_registry(env={"DDRL_PLUGINS": "mass"})
    registry = load_registry(env={"DDRL_PLUGINS": "ddrl-mass-b"})
    entry = registry.get("reward", "center-mass")
    assert entry.provenance() == {"name": "center-mass", "plugin": "mass", "distribution": "ddrl-mass-b",
                                  "version": "0.1.0"}
    import torch

    assert float(registry.build("reward", "center-mass", {}, "[[rewards]]")(torch.ones(1, 1, 2, 2), [""], {})) == 2.0


# --- string factories and heavy imports -----------------------------------------------------
def test_a_string_factory_is_imported_only_when_used(site):
    (site / "lazy_impl_module.py").write_text("IMPORTED = True\n\ndef build(*, scale: float = 1.0):\n"
                                              "    return lambda samples, prompts, metadata: samples.mean((1, 2, 3)) * scale\n")
    install(site, "ddrl-lazy", "lazy", "from ddrl_framework.hookspecs import hookimpl\n\n@hookimpl\n"
            "def register_reward_models(register):\n    register('lazy', 'lazy_impl_module:build')\n"
            "    register('broken-lazy', 'no_such_module_anywhere:build')\n")
    registry = load_registry()
    assert "lazy_impl_module" not in sys.modules
    with pytest.raises(UserError, match=r"\[\[rewards\]\]: unknown option 'scal'.*Did you mean 'scale'"):
        registry.check("reward", "lazy", {"scal": 2.0}, "[[rewards]]")
    assert "lazy_impl_module" in sys.modules  # checking the options imported it
    with pytest.raises(PluginError, match="plugin 'lazy' \\(ddrl-lazy 0.1.0\\) registered the factory "
                       "'no_such_module_anywhere:build', which cannot be imported: ModuleNotFoundError"):
        registry.check("reward", "broken-lazy", {}, "[[rewards]]")


def test_registering_and_checking_the_digits_config_imports_no_heavy_library():
    code = ("import sys\nfrom ddrl_framework.registry import load_registry\n"
            "from ddrl_framework.running.loader import load_file\n"
            "from ddrl_framework.running.validation import validate_experiment\n"
            "file = load_file('configs/digits-brightness.toml')\n"
            "validate_experiment(file.base, load_registry(), file.source, writes_output=False)\n"
            "print(sorted(m for m in ('diffusers', 'transformers', 'peft', 'open_clip', 'sklearn', 'tensorboard', 'wandb', "
            "'matplotlib', 'PIL') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_policy_that_builds_another_forward_process_than_it_declares_is_refused(tiny_config):
    import torch

    from ddrl_framework.running.components import build_components
    from ddrl_framework.running.loader import load_experiment
    from ddrl_plugins.policies.unet2d import build_unet2d_policy

    class Mislabelled:
        @hookimpl
        def register_policies(self, register):
            register("mislabelled", build_unet2d_policy, forward_process="flow-matching")

    manager = make_plugin_manager()
    manager.register(Mislabelled(), name="mislabelled-plugin")
    experiment = load_experiment(tiny_config(), ["policy={name='mislabelled'}", "pretrain.optimizer_steps=0"])
    with pytest.raises(UserError, match="declares a 'flow-matching' forward process but built a 'ddpm' one"):
        build_components(experiment, Registry(manager), torch.device("cpu"), show_progress=False)


# --- provenance -----------------------------------------------------------------------------
def test_config_json_records_which_plugin_provided_each_component(tiny_config, tmp_path):
    import json

    from ddrl_framework.running.loader import load_file
    from ddrl_framework.running.run_dir import record_config
    from ddrl_framework.running.validation import validate_experiment

    file = load_file(tiny_config())
    experiment = validate_experiment(file.base, load_registry(), file.source)
    record_config(tmp_path / "out", experiment)
    components = json.loads((tmp_path / "out" / "config.json").read_text())["components"]
    assert components["regularizer"] == {"name": "forward-kl-data", "plugin": "forward-kl-data",
                                         "distribution": "ddrl-framework", "version": "0.1.0"}
    assert [r["name"] for r in components["rewards"]] == ["brightness"]
    assert set(components) == {"policy", "sampler", "rewards", "regularizer", "data"}
