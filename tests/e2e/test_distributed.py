"""Data parallelism under torchrun on CPU (gloo, 2 processes): the same metrics as one process,
resume, and the errors. Each test starts real ``torchrun`` jobs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _torchrun(config, ranks, *extra):
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
               "--standalone", "-m", "ddrl_framework", "train", str(config), "--quiet", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _succeeded(*runs):
    """Every run exited 0; otherwise the lines of a failed one that say why (before torchrun's summary)."""
    for run in runs:
        lines = [line for line in run.stderr.splitlines() if "Warning" not in line and line.strip()]
        assert run.returncode == 0, "\n".join(lines[:60])


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
    _succeeded(one, two)
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
    _succeeded(straight, first, second)
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
    _succeeded(*runs.values())
    for x, y in zip(_records(config.parent / "replicated"), _records(config.parent / "fsdp2")):
        _close(x, y)
    assert _records(config.parent / "part") == _records(config.parent / "fsdp2")


def test_a_checkpoint_resumes_on_another_world_size_and_sharding(tiny_config):
    """Written by 2 FSDP2 ranks (each its shards), continued by 1 process; written by 1 process,
    continued by 2 DDP ranks: both give the metrics of the straight 1-process run."""
    config = tiny_config()
    out = {name: config.parent / name for name in ("straight", "from_two", "from_one")}
    runs = [
        _torchrun(config, 1, "--set", f"output_dir={out['straight']}"),
        _torchrun(config, 2, "--set", f"output_dir={out['from_two']}", "--set", "train.sharding=fsdp2",
                  "--set", "train.iterations=2"),
        _torchrun(config, 1, "--set", f"output_dir={out['from_two']}", "--resume"),
        _torchrun(config, 1, "--set", f"output_dir={out['from_one']}", "--set", "train.iterations=2"),
        _torchrun(config, 2, "--set", f"output_dir={out['from_one']}", "--resume"),
    ]
    _succeeded(*runs)
    folder = out["from_two"] / "checkpoints" / "iter-000002"
    assert len(list((folder / "tensors").iterdir())) == 2  # one file per rank
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert all(f.endswith(".safetensors") for f in files if f != "trainer.pt")  # no pickled metadata
    straight = _records(out["straight"])
    for name in ("from_two", "from_one"):
        resumed = _records(out[name])
        assert len(resumed) == len(straight) == 3
        for x, y in zip(straight, resumed):
            _close(x, y)


@pytest.mark.parametrize("sharding", ["ddp", "fsdp2"])
def test_a_diffusers_backbone_with_lora_trains_and_resumes_on_two_ranks(tmp_path, sharding):
    """SD3 (tiny, LoRA): every trainable weight gets a gradient in each backward (DDP would
    stop otherwise), and the sharded checkpoint of the adapters resumes exactly."""
    config = Path(__file__).parents[2] / "configs" / "sd3-tiny.toml"
    common = ["--set", "policy.lora_rank=4", "--set", f"train.sharding={sharding}", "--set", "train.eval_every=0",
              "--set", "train.grid_samples=0", "--set", "train.checkpoint_every=1", "--set", "train.eval_samples=4",
              "--set", "regularizer={name='reverse-kl', beta=0.01}"]
    straight = _torchrun(config, 2, *common, "--set", "train.iterations=2", "--set", f"output_dir={tmp_path / 'a'}")
    first = _torchrun(config, 2, *common, "--set", "train.iterations=1", "--set", f"output_dir={tmp_path / 'b'}")
    second = _torchrun(config, 2, *common, "--set", "train.iterations=2", "--set", f"output_dir={tmp_path / 'b'}",
                       "--resume")
    _succeeded(straight, first, second)
    assert _records(tmp_path / "b") == _records(tmp_path / "a")


@pytest.mark.parametrize("sharding", ["ddp", "fsdp2"])
def test_wan22s_two_experts_train_on_two_ranks_as_on_one(tmp_path, sharding):
    """Wan 2.2 A14B's experts pair (tiny). The data loss draws a timestep per sample, so one rank's
    batch may need one expert and the other's both: every rank calls both experts (kit/experts.py),
    or FSDP2's gathers and DDP's reductions would wait on each other. Two ranks give one's metrics."""
    config = Path(__file__).parents[2] / "configs" / "wan22-tiny.toml"
    common = ["--set", "train.iterations=2", "--set", "train.eval_every=0", "--set", "train.grid_samples=0",
              "--set", "train.checkpoint_every=0", "--set", "train.eval_samples=4"]
    one = _torchrun(config, 1, *common, "--set", f"output_dir={tmp_path / 'one'}")
    two = _torchrun(config, 2, *common, "--set", f"output_dir={tmp_path / 'two'}", "--set", f"train.sharding={sharding}")
    _succeeded(one, two)
    a, b = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        # on-policy, loss_policy is minus the mean of group-normalized advantages: zero up to rounding,
        # which a reward std of 4e-4 (random weights) magnifies to about 1e-5 either way
        assert abs(x.pop("loss_policy")) < 1e-4 and abs(y.pop("loss_policy")) < 1e-4
        _close(x, y)


def _two_ranks(worker, *args, timeout=300):
    """``worker(rank, *args)`` in 2 spawned processes joined as a gloo world; ``{rank: result}``."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_as_rank, args=(rank, port, queue, worker, args)) for rank in range(2)]
    for p in processes:
        p.start()
    results = dict(queue.get(timeout=timeout) for _ in processes)
    for p in processes:
        p.join(timeout=60)
    return results


def _as_rank(rank, port, queue, worker, args):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    queue.put((rank, worker(rank, *args)))


def _ddp_worker(rank):
    import torch
    import torch.distributed as dist

    from ddrl_framework.distributed.sharding import layout
    from ddrl_framework.distributed.world import init_world

    world = init_world("cpu")
    torch.manual_seed(rank)  # different initial weights: DDP makes them rank 0's

    class Policy:
        net = torch.nn.Linear(3, 1)

        def trainable_module(self):
            return self.net

    policy = Policy()
    shards = layout("ddp", policy, lambda: torch.optim.SGD(policy.net.parameters(), lr=0.1), world)
    x = torch.full((1, 3), float(rank + 1))
    shards.sync_gradients_in_next_backward(False)
    policy.net(x).sum().backward()
    local = policy.net.weight.grad.clone()  # not communicated
    shards.sync_gradients_in_next_backward(True)
    policy.net(x).sum().backward()

    class Bare:  # no trainable_module(): one flat all-reduce before the optimizer step
        weight = torch.nn.Parameter(torch.zeros(2))

        def trainable_parameters(self):
            return [self.weight]

    bare = Bare()
    flat = layout("ddp", bare, lambda: torch.optim.SGD([bare.weight], lr=0.1), world)
    (bare.weight * (rank + 1)).sum().backward()
    flat.reduce_gradients([bare.weight])
    dist.destroy_process_group()
    return (type(policy.net).__name__, policy.net.weight.tolist(), local.tolist(), policy.net.weight.grad.tolist(),
            type(flat).__name__, bare.weight.grad.tolist())


def test_ddp_wraps_the_trainable_module_and_syncs_only_the_last_backward_of_a_window():
    """Also: a policy without trainable_module() gets the flat all-reduce."""
    results = _two_ranks(_ddp_worker, timeout=120)
    name0, weight0, local0, synced0, flat0, bare0 = results[0]
    name1, weight1, local1, synced1, _, bare1 = results[1]
    assert name0 == name1 == "DDPLinear"
    assert weight0 == weight1  # rank 0's weights, broadcast at construction
    assert local0 == [[1.0] * 3] and local1 == [[2.0] * 3]  # the first backward did not communicate
    assert synced0 == synced1 == [[3.0] * 3]  # the second averaged the sums: (1 + 1 + 2 + 2) / 2
    assert flat0 == "Layout" and bare0 == bare1 == [1.5, 1.5]  # the mean of 1 and 2


class _NanOnRankOne:
    """A regularizer whose loss is NaN on rank 1 at iteration 1 (a fault only one rank sees)."""

    name, needs_reference, needs_reference_transition, needs_data = "nan_on_rank_one", False, False, False

    def __init__(self):
        self.calls = 0

    def loss(self, context):
        import torch.distributed as dist

        self.calls += 1  # 4 trained steps per iteration: call 5 is iteration 1, step 0
        bad = dist.get_rank() == 1 and self.calls == 5
        value = context.transition.mean.sum() * 0.0
        return {"loss_nan_on_rank_one": value + (float("nan") if bad else 0.0)}


def _skip_worker(rank, config, mode):
    from ddrl_framework.hookspecs import hookimpl
    from ddrl_framework.registry import Registry, make_plugin_manager
    from ddrl_framework.running.loader import load_experiment
    from ddrl_framework.running.trainer import train

    class Plugin:
        @hookimpl
        def register_regularizers(self, register):
            register("nan-on-rank-one", _NanOnRankOne)

    manager = make_plugin_manager()
    manager.register(Plugin(), name="nan-plugin")
    experiment = load_experiment(config, ["regularizer={name='nan-on-rank-one'}", f"train.on_nonfinite={mode}",
                                          "train.trained_denoising_steps=[0, 1, 2, 3]",
                                          f"output_dir={config.parent / mode}"])
    try:
        train(experiment, Registry(manager), show_progress=False)
        return "done"
    except Exception as error:  # noqa: BLE001 - reported to the test
        return f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("mode", ["skip", "stop"])
def test_a_fault_only_one_rank_sees_is_handled_by_every_rank(tiny_config, mode):
    config = tiny_config()
    outcomes = _two_ranks(_skip_worker, config, mode)
    if mode == "skip":
        assert outcomes == {0: "done", 1: "done"}
        records = _records(config.parent / "skip")
        assert [r["skipped_update"] for r in records] == [0, 1, 0]
    else:
        assert "iteration 1" in outcomes[0] and "iteration 1: loss_nan_on_rank_one at sampler step 0" in outcomes[1]
        assert all(o.startswith("TrainingError") for o in outcomes.values())
