"""Prompt embeddings stacked into a batch. Most pipelines pad every prompt to a fixed length, so
rows stack as they are. Qwen-Image's text is as long as its prompt: rows of different lengths are
padded with zeros to the longest, and a mask (1: a token, 0: padding, ``[B, L]`` long) goes with
them under the policy's ``text_mask_key``, as the pipeline pads a batch of prompts. A batch with
no padding carries no mask, as the pipeline's does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def stack_rows(rows: Sequence[Mapping[str, Tensor]], mask_key: str | None) -> dict[str, Tensor]:
    """One batch from ``rows`` (each ``[n_i, ...]``, with its mask or none)."""
    keys = [k for k in rows[0] if k != mask_key]
    varying = [k for k in keys if _varies(rows, k)]
    masked = mask_key is not None and any(mask_key in row for row in rows)
    if not varying and not masked:
        return {k: torch.cat([row[k] for row in rows]) for k in keys}
    if mask_key is None:
        raise ValueError("prompt embeddings of different lengths, and the policy names no text_mask_key "
                         "to pad them with")
    text = varying or [k for k in keys if rows[0][k].ndim >= 3]  # the keys with a text sequence (dim 1)
    longest = max(int(row[k].shape[1]) for row in rows for k in text)
    out = {k: torch.cat([_pad(row[k], longest) if k in text else row[k] for row in rows]) for k in keys}
    mask = torch.cat([_pad(_mask(row, text[0], mask_key), longest) for row in rows])
    return out if bool(mask.all()) else {**out, mask_key: mask}  # no padding: no mask, as the pipeline


def _varies(rows: Sequence[Mapping[str, Tensor]], key: str) -> bool:
    return rows[0][key].ndim >= 3 and len({int(row[key].shape[1]) for row in rows}) > 1


def _mask(row: Mapping[str, Tensor], key: str, mask_key: str) -> Tensor:
    if mask_key in row:
        return row[mask_key]
    return torch.ones(row[key].shape[:2], dtype=torch.long, device=row[key].device)


def _pad(x: Tensor, length: int) -> Tensor:
    """Zeros after the sequence (dim 1) up to ``length``."""
    pad = [0, 0] * (x.ndim - 2) + [0, length - x.shape[1]]
    return F.pad(x, pad)
