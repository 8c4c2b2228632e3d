"""The Logger contract suite: define ``make_logger()``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddrl_framework.protocols import Logger
from ddrl_framework.testing.messages import protocol_message


class LoggerContract:
    """Define ``make_logger()`` (a fresh logger; the checks start it in a temporary folder)."""

    def make_logger(self) -> Logger:
        raise NotImplementedError

    @pytest.fixture
    def started(self, tmp_path: Path):
        logger = self.make_logger()
        line = logger.start(tmp_path / "run", {"seed": 0, "train": {"iterations": 2}})
        yield logger, line
        logger.close()

    def test_implements_protocol(self):
        logger = self.make_logger()
        assert isinstance(logger, Logger), protocol_message(logger, Logger)

    def test_start_says_where_to_look(self, started):
        _, line = started
        assert isinstance(line, str) and line, f"start() returned {line!r}; expected a line saying where to look"

    def test_takes_records_with_non_numbers_and_non_finite_values(self, started):
        logger, _ = started
        for step in range(2):
            logger.log_metrics({"iteration": step, "reward_mean": 0.5 + step, "nonfinite_source": "x",
                                "loss": float("nan")}, step, "train")
        logger.log_metrics({"iteration": 2, "reward_mean": 1.0}, 2, "eval")

    @pytest.mark.parametrize("shape", [(3, 1, 8, 8), (2, 3, 8, 8), (2, 3, 3, 8, 8)], ids=["gray", "rgb", "video"])
    def test_takes_images_and_videos(self, started, shape):
        logger, _ = started
        logger.log_samples("eval/samples", torch.rand(shape, generator=torch.Generator().manual_seed(0)), 3)
