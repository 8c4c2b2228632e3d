"""Checkpoints written atomically: a finished checkpoint is never half-written, and the previous
one survives a crash during the write.

Layout: ``checkpoints/iter-000050/{policy.safetensors, trainer.pt}`` and ``checkpoints/latest``
(the name of the newest complete one). A checkpoint folder is written under a temporary name,
fsynced and renamed; then ``latest`` is replaced atomically; then old folders are pruned.
Weights load through safetensors, other state through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import signal
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ddrl_framework.errors import TrainingError, UserError

POLICY_FILE = "policy.safetensors"
STATE_FILE = "trainer.pt"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(
    directory: Path, iteration: int, policy_state: dict[str, torch.Tensor], state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Save one checkpoint under ``directory`` and point ``latest`` at it.

    Written to a temporary folder, fsynced and renamed: a crash or a full disk at any point leaves
    the previous checkpoint (and ``latest``) as they were. A failed write is a ``TrainingError``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    name = f"iter-{iteration:06d}"
    final = directory / name
    tmp = directory / f".{name}.tmp-{os.getpid()}"
    try:
        _write_folder(tmp, policy_state, state)
        if final.exists():  # left by a crash before `latest` was updated: not the latest
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync(directory)
        atomic_write_bytes(directory / "latest", name.encode())
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = latest_checkpoint(directory)
        previous = f"the previous checkpoint {kept} is intact" if kept else "there is no earlier checkpoint"
        raise TrainingError(f"could not write checkpoint {final} ({error}); {previous}") from None
    _prune(directory, keep, current=name)
    return final


def _write_folder(tmp: Path, policy_state: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in policy_state.items()}, tmp / POLICY_FILE)
    _kill_point(tmp.name)
    torch.save(state, tmp / STATE_FILE)
    for path in (tmp / POLICY_FILE, tmp / STATE_FILE, tmp):
        _fsync(path)


def _kill_point(name: str) -> None:
    """Fault injection for the kill-and-resume tests: ``DDRL_KILL_IN_CHECKPOINT=iter-000002`` sends
    SIGKILL to this process halfway through writing that checkpoint (weights written, state not)."""
    target = os.environ.get("DDRL_KILL_IN_CHECKPOINT")
    if target and name.startswith(f".{target}.tmp"):
        os.kill(os.getpid(), signal.SIGKILL)


def _prune(directory: Path, keep: int, current: str) -> None:
    """Delete all but the ``keep`` newest checkpoints, and temporary folders of killed processes."""
    finished = sorted(p for p in directory.glob("iter-*") if p.is_dir())
    stale = list(directory.glob(".iter-*.tmp-*"))
    for path in finished[: max(len(finished) - keep, 0)] + stale:
        if path.name != current:
            shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(directory: Path) -> Path | None:
    pointer = directory / "latest"
    if not pointer.is_file():
        return None
    path = directory / pointer.read_text().strip()
    if not path.is_dir():
        raise UserError(f"{pointer} names '{path.name}', which does not exist: the checkpoint "
                        f"folder was removed. Delete {pointer} to start over.")
    return path


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Policy weights and trainer state; a damaged or unsafe file is a UserError naming it."""
    try:
        weights = load_file(path / POLICY_FILE)
    except Exception as error:
        raise UserError(f"corrupt checkpoint {path / POLICY_FILE}: {error}. Resume from another "
                        "checkpoint or start without --resume.") from None
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"corrupt or unsafe checkpoint {path / STATE_FILE}: {first_line}. Only "
                        "plain tensors and containers load (weights_only=True).") from None
    return weights, state
