"""Data source ``reference-samples``: samples of the reference policy, generated once and cached
on disk, served as the data distribution when no real data exists (the paper's synthetic-data
case: the data regularizer then anchors the policy to what the reference generated).

Before its first batch the trainer calls ``prepare(policy, sampler, identity)``; the samples are
cached under ``$DDRL_CACHE_DIR/reference-samples/``, keyed by the policy and sampler config
(``identity``) and this source's options, as 8-bit pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import torch
from safetensors.torch import save
from tqdm import tqdm

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.cache import cache_root, config_hash
from ddrl_framework.kit.data_nodes import BatchLoader
from ddrl_framework.kit.files import load_prompt_list
from ddrl_framework.kit.io import atomic_write_bytes
from ddrl_framework.types import DataBatch, take


@hookimpl
def register_data_sources(register):
    register("reference-samples", ReferenceSamples)


@attrs.define(kw_only=True)
class ReferenceSamples:
    file: str | None = None  # prompts: .txt or .jsonl, as the prompts source reads them
    prompts: tuple[str, ...] = ()  # or inline
    samples_per_prompt: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    held_out_count: int = attrs.field(default=64, validator=attrs.validators.ge(1))  # the last ones
    batch_size: int = attrs.field(default=16, validator=attrs.validators.ge(1))  # generation batch
    seed: int = 0  # generation noise
    needs_policy = True
    _prompt_list: list[str] = attrs.field(init=False, repr=False)
    _data: DataBatch | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        self._prompt_list = load_prompt_list(self.file, self.prompts)

    def cache_file(self, identity: str) -> Path:
        options = {"prompts": self._prompt_list, "samples_per_prompt": self.samples_per_prompt,
                   "seed": self.seed}
        return cache_root() / "reference-samples" / f"{config_hash([identity, options])}.safetensors"

    def prepare(self, policy, sampler, identity: str, show_progress: bool = True) -> None:
        path = self.cache_file(identity)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels, prompts = self._generate(policy, sampler, show_progress)
            atomic_write_bytes(path, save({"pixels": pixels}, metadata={"prompts": json.dumps(prompts)}))
        self._data = _read(path)

    @torch.no_grad()
    def _generate(self, policy, sampler, show_progress: bool):
        prompts = [p for p in self._prompt_list for _ in range(self.samples_per_prompt)]
        generator = torch.Generator(device=policy.device).manual_seed(self.seed)
        chunks = []
        for start in tqdm(range(0, len(prompts), self.batch_size), desc="reference samples",
                          unit="batch", disable=not show_progress):
            batch = DataBatch(prompts=tuple(prompts[start : start + self.batch_size]))
            noise = torch.randn((len(batch), *policy.sample_shape), generator=generator, device=policy.device)
            trajectory = sampler.rollout(policy, policy.encode_conditions(batch), noise, generator)
            chunks.append((policy.decode(trajectory.final) * 255).round().to(torch.uint8).cpu())
        return torch.cat(chunks).contiguous(), prompts

    def _ready(self) -> DataBatch:
        if self._data is None:
            raise RuntimeError("reference-samples: prepare(policy, sampler, identity) was not called")
        return self._data

    def _split(self) -> int:
        return max(1, len(self._ready()) - self.held_out_count)

    def loader(self, batch_size: int, seed: int) -> BatchLoader:
        data = self._ready()
        return BatchLoader(self._split(), batch_size, seed, lambda positions: _index(data, positions))

    def held_out(self) -> DataBatch:
        data = self._ready()
        return _index(data, range(self._split(), len(data))) if len(data) > 1 else take(data, 1)


def _index(data: DataBatch, positions) -> DataBatch:
    positions = list(positions)
    return DataBatch(prompts=tuple(data.prompts[i] for i in positions), x0=data.x0[torch.tensor(positions)])


def _read(path: Path) -> DataBatch:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        prompts = json.loads(handle.metadata()["prompts"])
        pixels = handle.get_tensor("pixels")
    return DataBatch(prompts=tuple(prompts), x0=pixels.float() / 255)
