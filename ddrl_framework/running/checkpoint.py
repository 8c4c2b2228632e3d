"""Checkpoints written atomically with ``torch.distributed.checkpoint``: a finished checkpoint is
never half-written, and the previous one survives a crash during the write.

Layout: ``checkpoints/iter-000050/{tensors/shard-*.safetensors, trainer.pt}`` and
``checkpoints/latest`` (the name of the newest complete one). ``tensors/`` holds the trainable
weights and the optimizer's tensors, each rank writing its own shards (under FSDP2 its slices;
replicated tensors once); ``trainer.pt`` the iteration, data position and optimizer settings.
A checkpoint loads into any world size and sharding: each rank reads the slices it needs.
Tensors load through safetensors (their headers are JSON: nothing is unpickled), the rest
through ``torch.load(weights_only=True)``. The folder is written under a temporary name, fsynced
and renamed; then ``latest`` is replaced atomically; then old folders are pruned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from safetensors import safe_open
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.hf_storage import (
    HuggingFaceStorageReader,
    HuggingFaceStorageWriter,
)
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from ddrl_framework.distributed.sharding import Layout
from ddrl_framework.distributed.world import World, any_rank
from ddrl_framework.errors import TrainingError, UserError
from ddrl_framework.kit.io import atomic_write_bytes, fsync

TENSORS_DIR = "tensors"
STATE_FILE = "trainer.pt"


def save_checkpoint(
    directory: Path, iteration: int, tensors: dict[str, torch.Tensor], state: dict[str, Any],
    world: World = World(), keep: int = 2,
) -> Path:
    """Save one checkpoint under ``directory`` and point ``latest`` at it (call on every rank).

    ``tensors`` (weights and optimizer state; DTensor shards under FSDP2) are written by
    ``torch.distributed.checkpoint``, each rank its own part; ``state`` (plain values) by rank 0.
    All of it goes to a temporary folder, fsynced and renamed: a crash or a full disk at any point
    leaves the previous checkpoint (and ``latest``) as they were. A failed write is a
    ``TrainingError`` on every rank.
    """
    name = f"iter-{iteration:06d}"
    final, tmp = directory / name, directory / f".{name}.tmp"
    steps = (lambda: world.is_main and _prepare(tmp),
             lambda: _write_tensors(tensors, tmp / TENSORS_DIR, world),
             lambda: world.is_main and _finish(tmp, final, state))
    for step in steps:
        try:
            step()
            error = None
        except (OSError, CheckpointException) as raised:
            error = raised
        if any_rank(error is not None, world):  # every rank stops, or none
            if world.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            kept = latest_checkpoint(directory)
            previous = f"the previous checkpoint {kept} is intact" if kept else "there is no earlier checkpoint"
            cause = _first_line(error) if error else "failed on another rank"
            raise TrainingError(f"could not write checkpoint {final} ({cause}); {previous}")
    if world.is_main:
        _prune(directory, keep, current=name)
    return final


def _prepare(tmp: Path) -> None:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()


def _write_tensors(tensors: dict[str, torch.Tensor], folder: Path, world: World) -> None:
    """Each rank writes its shards as safetensors (offsets in the header, no pickle), fsynced."""
    writer = HuggingFaceStorageWriter(str(folder), save_distributed=True)
    with _one_process_is_intended():
        dcp.save(tensors, storage_writer=writer, no_dist=not world.distributed)


def _finish(tmp: Path, final: Path, state: dict[str, Any]) -> None:
    """Rank 0, once every rank's tensors are written: the state, fsync, rename, ``latest``."""
    _kill_point(tmp.name)
    torch.save(state, tmp / STATE_FILE)
    for path in (*tmp.joinpath(TENSORS_DIR).iterdir(), tmp / TENSORS_DIR, tmp / STATE_FILE, tmp):
        fsync(path)
    if final.exists():  # left by a crash before `latest` was updated: not the latest
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync(final.parent)
    atomic_write_bytes(final.parent / "latest", final.name.encode())


def _kill_point(name: str) -> None:
    """Fault injection for the kill-and-resume tests: ``DDRL_KILL_IN_CHECKPOINT=iter-000002`` sends
    SIGKILL to this process halfway through writing that checkpoint (weights written, state not)."""
    target = os.environ.get("DDRL_KILL_IN_CHECKPOINT")
    if target and name.startswith(f".{target}.tmp"):
        os.kill(os.getpid(), signal.SIGKILL)


def _prune(directory: Path, keep: int, current: str) -> None:
    """Delete all but the ``keep`` newest checkpoints, and what killed processes left half
    written: checkpoint folders and ``latest`` pointers (kit.io.atomic_write_bytes's temporaries)."""
    finished = sorted(p for p in directory.glob("iter-*") if p.is_dir())
    stale = list(directory.glob(".iter-*.tmp*"))
    for path in finished[: max(len(finished) - keep, 0)] + stale:
        if path.name != current:
            shutil.rmtree(path, ignore_errors=True)
    for pointer in directory.glob(".latest.tmp-*"):
        if pointer.name != f".latest.tmp-{os.getpid()}":
            pointer.unlink(missing_ok=True)


def latest_checkpoint(directory: Path) -> Path | None:
    pointer = directory / "latest"
    if not pointer.is_file():
        return None
    path = directory / pointer.read_text().strip()
    if not path.is_dir():
        raise UserError(f"{pointer} names '{path.name}', which does not exist: the checkpoint "
                        f"folder was removed. Delete {pointer} to start over.")
    return path


def load_checkpoint(path: Path, tensors: dict[str, torch.Tensor], world: World = World()) -> dict[str, Any]:
    """Fill ``tensors`` in place from the checkpoint (resharded to this world's layout) and return
    the trainer state; a damaged, unsafe or mismatched checkpoint is a UserError naming the file."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"corrupt or unsafe checkpoint {path / STATE_FILE}: {_first_line(error)}. Only "
                        "plain tensors and containers load (weights_only=True).") from None
    folder = path / TENSORS_DIR
    if not folder.is_dir():
        raise UserError(f"{path} has no {TENSORS_DIR}/ folder: it was written by an older version "
                        "(policy.safetensors); start this run again without --resume")
    for shard in sorted(folder.iterdir()):
        _check_header(shard)
    try:
        with _one_process_is_intended():
            dcp.load(tensors, storage_reader=HuggingFaceStorageReader(str(folder)), no_dist=not world.distributed)
    except (Exception, CheckpointException) as error:  # CheckpointException is a BaseException
        raise UserError(f"checkpoint {folder} does not match this run: {_first_line(error)}. Was it "
                        "made with other policy options (e.g. LoRA)?") from None
    return state


def _check_header(shard: Path) -> None:
    try:
        with safe_open(str(shard), framework="pt") as handle:
            handle.keys()
    except Exception as error:
        raise UserError(f"corrupt checkpoint {shard}: {_first_line(error)}. Resume from another "
                        "checkpoint or start without --resume.") from None


@contextlib.contextmanager
def _one_process_is_intended() -> Iterator[None]:
    """Silence DCP's warning that it runs in a single process (it says so even with no_dist)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _first_line(error: BaseException) -> str:
    if isinstance(error, CheckpointException):  # the first rank's own error, not DCP's summary
        error = next(iter(error.failures.values()))[0]
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- a training run's state: the sharded layout's weights and optimizer, plus plain values -------

SAVE_OPTIONS = StateDictOptions(ignore_frozen_params=True)
LOAD_OPTIONS = StateDictOptions(ignore_frozen_params=True, strict=False)  # frozen weights stay as built


def save_training_state(layout: Layout, directory: Path, iteration: int, state: dict[str, Any],
                        keep: int) -> Path:
    """A checkpoint of the layout's weights and optimizer and of ``state`` (call on every rank)."""
    model, optimizer = get_state_dict(layout.module, layout.optimizer, options=SAVE_OPTIONS)
    state = {**state, "param_groups": optimizer["param_groups"]}
    return save_checkpoint(directory, iteration, _tensors(model, optimizer), state, layout.world, keep)


def load_training_state(layout: Layout, path: Path) -> dict[str, Any]:
    """Load a checkpoint written with any world size or sharding into ``layout``; returns ``state``."""
    model, optimizer = get_state_dict(layout.module, layout.optimizer, options=SAVE_OPTIONS)  # the layout here
    state = load_checkpoint(path, _tensors(model, optimizer), layout.world)  # fills them in place
    optimizer["param_groups"] = state.pop("param_groups")
    set_state_dict(layout.module, layout.optimizer, model_state_dict=model, optim_state_dict=optimizer,
                   options=LOAD_OPTIONS)
    return state


def _tensors(model: dict[str, Any], optimizer: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of both state dicts under flat keys (``model/<fqn>``, ``optimizer/<fqn>/<name>``),
    sharing storage with them, so that loading into these fills the state dicts."""
    tensors = {f"model/{key}": value for key, value in model.items()}
    for fqn, values in optimizer["state"].items():
        tensors.update({f"optimizer/{fqn}/{name}": value for name, value in values.items()})
    return tensors
