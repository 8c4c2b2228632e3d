"""Checkpoints in one process: what a folder holds, a policy without ``trainable_module()``, and
the errors for a folder of the old layout or of another policy."""

import pytest
import torch

from ddrl_framework.distributed.sharding import Layout
from ddrl_framework.distributed.world import World
from ddrl_framework.errors import UserError
from ddrl_framework.running.checkpoint import load_training_state, save_training_state
from ddrl_framework.testing.fakes import FakePolicy


def _trained(policy, steps=2):
    shards = Layout(policy, lambda: torch.optim.AdamW(policy.trainable_parameters(), lr=0.1), World())
    for _ in range(steps):
        sum(p.square().sum() for p in policy.trainable_parameters()).backward()
        shards.optimizer.step()
        shards.optimizer.zero_grad()
    return shards


def test_a_policy_without_trainable_module_round_trips_weights_and_optimizer(tmp_path):
    policy = FakePolicy()
    assert not hasattr(policy, "trainable_module")
    shards = _trained(policy)
    path = save_training_state(shards, tmp_path, 2, {"iteration": 2, "data": {"position": 5}}, keep=2)
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    # nothing pickled but the plain-valued state
    assert files == ["tensors/shard-00001-model-00001-of-00001.safetensors", "trainer.pt"]

    fresh = FakePolicy(seed=1)  # other weights until loaded
    assert not torch.equal(next(iter(fresh.trainable_parameters())), next(iter(policy.trainable_parameters())))
    loaded = _trained(fresh, steps=0)
    state = load_training_state(loaded, path)
    assert state == {"iteration": 2, "data": {"position": 5}}
    for a, b in zip(policy.trainable_parameters(), fresh.trainable_parameters()):
        assert torch.equal(a, b)
    saved, restored = shards.optimizer.state_dict(), loaded.optimizer.state_dict()
    for key, values in saved["state"].items():
        assert all(torch.equal(values[name], restored["state"][key][name]) for name in values)
    assert restored["param_groups"][0]["lr"] == 0.1


def test_a_checkpoint_of_another_policy_is_a_user_error(tmp_path):
    path = save_training_state(_trained(FakePolicy()), tmp_path, 1, {"iteration": 1}, keep=1)
    other = FakePolicy(channels=2)  # other shapes
    with pytest.raises(UserError, match=r"does not match this run"):
        load_training_state(_trained(other, steps=0), path)


def test_a_checkpoint_of_the_old_layout_is_named(tmp_path):
    path = save_training_state(_trained(FakePolicy()), tmp_path, 1, {"iteration": 1}, keep=1)
    (path / "tensors").rename(path / "policy.safetensors")
    with pytest.raises(UserError, match=r"no tensors/ folder: it was written by an older version"):
        load_training_state(_trained(FakePolicy(), steps=0), path)


def test_pruning_removes_what_killed_processes_left_half_written(tmp_path):
    """A process killed while writing the ``latest`` pointer leaves ``.latest.tmp-<pid>``; the
    next checkpoint's pruning removes it, as it removes half-written checkpoint folders."""
    from ddrl_framework.running.checkpoint import _prune

    (tmp_path / ".latest.tmp-99999").write_text("iter-000001")
    (tmp_path / ".iter-000002.tmp").mkdir()
    (tmp_path / "iter-000001").mkdir()
    _prune(tmp_path, keep=2, current="iter-000001")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter-000001"]
