"""The pluggy registry: built-ins through entry points, fakes, duplicates, errors, env vars."""

import subprocess
import sys

import pytest

from ddrl_framework.errors import PluginError, UserError
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.registry import Registry, load_registry, make_plugin_manager


class FakeRewardPlugin:
    @hookimpl
    def register_reward_models(self, register):
        register("constant", lambda *, value=1.0: (lambda samples, prompts, metadata: samples.new_full(
            (samples.shape[0],), value)))


def test_builtins_are_registered_through_entry_points():
    registry = load_registry(env={"DDRL_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert registry.names("policy") == ["flux", "flux2-klein", "mlp-denoiser", "qwen-image", "sd3", "stable-diffusion", "unet2d", "wan", "wan2.2"]
    assert {"ddim-sde", "flow-sde"} <= set(registry.names("sampler"))
    assert {"none", "reverse-kl", "forward-kl-data"} <= set(registry.names("regularizer"))
    assert registry.get("data", "sklearn-digits").plugin == "sklearn-digits"


def test_a_fake_plugin_is_registered_and_unregistered():
    manager = make_plugin_manager()
    plugin = FakeRewardPlugin()
    manager.register(plugin, name="fake-reward")
    try:
        reward = Registry(manager).build("reward", "constant", {"value": 2.0}, "[[rewards]] #1")
        import torch
        assert torch.equal(reward(torch.zeros(3, 1, 2, 2), ["a"] * 3, {}), torch.full((3,), 2.0))
    finally:
        manager.unregister(plugin)
    with pytest.raises(PluginError, match="unknown reward model 'constant'"):
        Registry(manager).get("reward", "constant")


def test_duplicate_names_fail_naming_both_plugins():
    class Twin:
        @hookimpl
        def register_reward_models(self, register):
            register("brightness", object)

    manager = make_plugin_manager()
    manager.register(Twin(), name="twin-plugin")
    with pytest.raises(PluginError, match=r"'brightness' is registered twice: by plugin 'brightness' "
                       r"\(ddrl-framework 0.1.0\) and by plugin 'twin-plugin'. Rename one"):
        Registry(manager)


def test_unknown_name_lists_the_known_ones_with_a_did_you_mean():
    with pytest.raises(PluginError) as error:
        load_registry().get("regularizer", "reverse_kl")
    message = str(error.value)
    assert "Did you mean 'reverse-kl'?" in message and "forward-kl-data" in message


def test_a_plugin_that_raises_in_its_hook_is_named():
    class Broken:
        @hookimpl
        def register_samplers(self, register):
            raise RuntimeError("boom")

    manager = make_plugin_manager()
    manager.register(Broken(), name="broken-plugin")
    with pytest.raises(PluginError, match="plugin 'broken-plugin' raised in register_samplers.*boom"):
        Registry(manager)


def test_unknown_option_names_the_key_and_suggests():
    with pytest.raises(UserError, match=r"\[sampler\]: unknown option 'etaa'.*Did you mean 'eta'"):
        load_registry().build("sampler", "ddim-sde", {"etaa": 1.0}, "[sampler]")


def test_wrong_option_type_names_the_key_path():
    with pytest.raises(UserError, match=r"\[sampler\]\.denoising_steps"):
        load_registry().build("sampler", "ddim-sde", {"denoising_steps": "ten"}, "[sampler]")


def test_rejected_option_value_is_a_user_error():
    with pytest.raises(UserError, match="regularizer 'reverse-kl'.*beta"):
        load_registry().build("regularizer", "reverse-kl", {"beta": -1.0}, "[regularizer]")


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """The reward plugin of docs/writing-a-plugin.md (what `ddrl new-plugin reward center-mass`
    writes), pip-installed from a temporary folder into a target folder (so the test environment
    is left as it was)."""
    from ddrl_framework.scaffold import write_plugin

    root = tmp_path_factory.mktemp("plugin")
    source = write_plugin("reward", "center-mass", root / "ddrl-center-mass")
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)], check=True)
    return target


def _ddrl(args, env_extra, pythonpath):
    import os
    env = {**os.environ, "PYTHONPATH": str(pythonpath), **env_extra}
    return subprocess.run([sys.executable, "-m", "ddrl_framework", *args], capture_output=True,
                          text=True, env=env)


@pytest.mark.slow
def test_an_installed_plugin_package_is_found_through_its_entry_point(installed_plugin):
    result = _ddrl(["plugins"], {}, installed_plugin)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if "center-mass" in l)
    assert "plugin center-mass " in line and "ddrl-center-mass 0.1.0" in line
    assert "ddrl-framework" in next(l for l in result.stdout.splitlines() if "unet2d" in l)


@pytest.mark.slow
@pytest.mark.parametrize("env,found", [
    ({"DDRL_DISABLE_PLUGIN_AUTOLOAD": "1"}, False),
    ({"DDRL_PLUGINS": "brightness"}, False),  # a built-in: the built-ins alone
    ({"DDRL_PLUGINS": "center-mass"}, True),
])
def test_environment_variables_limit_which_plugins_load(installed_plugin, env, found):
    result = _ddrl(["plugins"], env, installed_plugin)
    assert result.returncode == 0, result.stderr
    assert ("plugin center-mass" in result.stdout) is found  # else listed as "installed, not loaded"
    assert "unet2d" in result.stdout  # built-ins always load


@pytest.mark.slow
def test_the_documented_plugin_passes_its_contract_tests(installed_plugin):
    import os
    tests = installed_plugin.parent / "ddrl-center-mass" / "tests"
    env = {**os.environ, "PYTHONPATH": str(installed_plugin)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
                            capture_output=True, text=True, env=env, cwd=tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed" in result.stdout  # the reward suite (protocol, shape, 3 edge inputs, not constant) and scale


@pytest.mark.slow
def test_a_plugin_that_fails_to_import_is_named(tmp_path, tiny_config):
    dist = tmp_path / "ddrl_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ddrl-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ddrl_framework]\nbroken = ddrl_broken_module\n")
    (tmp_path / "ddrl_broken_module.py").write_text("raise ImportError('needs libfoo')\n")
    result = _ddrl(["plugins"], {}, tmp_path)  # the doctor of the registry lists it, and exits 1
    assert result.returncode == 1 and "Traceback" not in result.stderr
    broken = result.stdout.split("broken plugins")[1]
    assert "plugin 'broken'" in broken and "needs libfoo" in broken and "DDRL_PLUGINS" in broken
    assert "unet2d" in result.stdout.split("broken plugins")[0]
    refused = _ddrl(["pretrain", str(tiny_config())], {}, tmp_path)  # every other command refuses
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "needs libfoo" in refused.stderr and "`ddrl plugins`" in refused.stderr
