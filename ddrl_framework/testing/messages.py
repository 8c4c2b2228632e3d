"""What the contract suites say when a check fails: what was expected and what came back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch


def shape(value: Any) -> str:
    """``[4, 1]`` for a tensor's shape (or a tuple), the type's name for anything else."""
    if isinstance(value, torch.Tensor):
        return str(list(value.shape))
    if isinstance(value, (tuple, list, torch.Size)):
        return str(list(value))
    return type(value).__name__


def brief(value: Any, count: int = 4) -> str:
    """A tensor as ``shape dtype [first values, ...]`` (NaN and inf shown as such)."""
    if not isinstance(value, torch.Tensor):
        return repr(value)[:80]
    flat = value.detach().float().flatten().cpu()
    shown = ", ".join(f"{float(v):.4g}" for v in flat[:count]) + (", ..." if flat.numel() > count else "")
    return f"{shape(value)} {str(value.dtype).removeprefix('torch.')} [{shown}]"


def max_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` (on the CPU, in float64)."""
    return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The attributes and methods of ``protocol`` that ``obj`` lacks."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}
    return sorted(n for n in names if not hasattr(obj, n))


def protocol_message(obj: Any, protocol: type) -> str:
    return (f"{type(obj).__name__} is not a {protocol.__name__}: it lacks "
            f"{', '.join(missing_members(obj, protocol)) or 'nothing by name (check the signatures)'}")


def name_diff(got: Sequence[str], expected: Sequence[str], limit: int = 3) -> str:
    """How two name lists differ: missing, unexpected, or the same names in another order."""
    missing = [n for n in expected if n not in set(got)][:limit]
    extra = [n for n in got if n not in set(expected)][:limit]
    if not (missing or extra):
        return "the same names in another order" if list(got) != list(expected) else "no difference"
    return f"missing {missing}, unexpected {extra}"


def nonzero_count(tensors: Iterable[torch.Tensor | None]) -> tuple[int, int]:
    """How many of ``tensors`` (gradients) are non-zero somewhere, and how many there are."""
    values = list(tensors)
    return sum(1 for g in values if g is not None and bool(g.abs().sum() > 0)), len(values)


def first_line(error: BaseException) -> str:
    """``TypeName: the error's first line`` (torch's argument errors run over many lines)."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
