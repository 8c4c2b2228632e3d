"""Reward ``remote``: scores from a reward server over HTTP (a VLM judge, a large reward model on
another machine). One POST per batch, JSON both ways:

    request:  {"prompts": [...], "images": ["<base64 PNG>", ...], "shape": [C, H, W] or [C, T, H, W]}
    response: {"rewards": [float, ...]}   (one per sample, in order)

Videos are sent frame by frame: ``images`` holds ``B x T`` PNGs, sample-major. A timeout and a
few retries with exponential back-off cover a busy server; what fails names the URL.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl


@hookimpl
def register_reward_models(register):
    register("remote", RemoteReward)


def png_base64(image: Tensor) -> str:
    """``[C, H, W]`` in [0, 1] (C = 1 or 3) to a base64 PNG."""
    from PIL import Image  # here, not at registration: `ddrl plugins` stays fast

    pixels = (image.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png_base64(text: str) -> Tensor:
    """The inverse of :func:`png_base64` (for servers and tests)."""
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))), dtype=np.float32) / 255
    return torch.from_numpy(array[..., None] if array.ndim == 2 else array).permute(2, 0, 1)


def _images(samples: Tensor) -> list[Tensor]:
    if samples.ndim == 5:  # [B, C, T, H, W]: frames, sample-major
        return list(samples.transpose(1, 2).flatten(0, 1))
    return list(samples)


@attrs.frozen(kw_only=True)
class RemoteReward:
    url: str  # e.g. "http://judge.internal:8000/score"
    timeout: float = attrs.field(default=60.0, validator=attrs.validators.gt(0.0))  # seconds per try
    retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    backoff: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))  # seconds, doubling

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        body = json.dumps({"prompts": list(prompts), "images": [png_base64(i) for i in _images(samples)],
                           "shape": list(samples.shape[1:])}).encode()
        rewards = self._parse(self._post(body))
        if len(rewards) != samples.shape[0]:
            raise ValueError(f"reward server {self.url} returned {len(rewards)} rewards for "
                             f"{samples.shape[0]} samples")
        return torch.tensor(rewards, dtype=torch.float32, device=samples.device)

    def _post(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as error:
                if error.code < 500 or attempt == self.retries:
                    raise RuntimeError(f"reward server {self.url} answered HTTP {error.code}: "
                                       f"{error.read()[:200].decode(errors='replace')}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                if attempt == self.retries:
                    raise RuntimeError(f"reward server {self.url} unreachable after {self.retries + 1} "
                                       f"tries: {getattr(error, 'reason', error)}") from None
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _parse(self, payload: bytes) -> list[float]:
        try:
            rewards = json.loads(payload)["rewards"]
            return [float(r) for r in rewards]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"reward server {self.url} must answer {{\"rewards\": [numbers]}}; got "
                             f"{payload[:200]!r}") from None
