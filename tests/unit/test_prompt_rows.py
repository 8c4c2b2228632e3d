"""Prompt rows stacked into a batch (kit/prompt_rows.py): padded with a mask where lengths differ,
as a pipeline pads a batch of prompts, and no mask where nothing is padded."""

import pytest
import torch

from ddrl_framework.kit.prompt_rows import stack_rows

MASK = "encoder_hidden_states_mask"


def row(length: int, batch: int = 1, mask: bool = False) -> dict:
    out = {"encoder_hidden_states": torch.ones(batch, length, 4), "pooled": torch.ones(batch, 3)}
    if mask:
        out[MASK] = torch.ones(batch, length, dtype=torch.long)
    return out


def test_rows_of_one_length_stack_without_a_mask():
    out = stack_rows([row(5), row(5)], MASK)
    assert out["encoder_hidden_states"].shape == (2, 5, 4) and MASK not in out


def test_rows_of_different_lengths_are_padded_with_zeros_and_masked():
    out = stack_rows([row(3), row(5)], MASK)
    assert out["encoder_hidden_states"].shape == (2, 5, 4)
    assert out[MASK].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert out["encoder_hidden_states"][0, 3:].abs().sum() == 0 and out["pooled"].shape == (2, 3)


def test_a_masked_batch_beside_a_row_of_its_length_keeps_its_mask():
    """Guidance stacks the negative prompt (its own length, no mask) with a padded positive batch
    of the same length: the positives' padding must stay masked."""
    positive = stack_rows([row(3), row(5)], MASK)
    both = stack_rows([row(5, batch=2), positive], MASK)
    assert both[MASK].tolist() == [[1] * 5, [1] * 5, [1, 1, 1, 0, 0], [1] * 5]


def test_lengths_that_differ_without_a_mask_key_are_an_error():
    with pytest.raises(ValueError, match="text_mask_key"):
        stack_rows([row(3), row(5)], None)
