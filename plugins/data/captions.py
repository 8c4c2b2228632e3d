"""Data sources ``image-captions`` and ``video-captions``: real paired data, the distribution DDRL's
data regularizer anchors the policy to.

A ``manifest`` is a ``.jsonl`` file with one ``{"image": "path", "caption": "..."}`` (or
``"video"``) object per line, paths relative to the manifest's folder. For images, a ``folder``
of image files each with a same-named ``.txt`` caption works too. Videos are frame folders,
animated GIF/WebP files or ``[T, H, W, 3]`` uint8 ``.npy`` arrays (decode mp4 files to frames
first). Media are read lazily, one batch at a time; a fixed split holds out a fraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import torch

from ddrl_framework.errors import UserError
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.data_nodes import BatchLoader
from ddrl_framework.kit.files import (
    IMAGE_SUFFIXES,
    existing_file,
    load_image,
    load_video,
    read_jsonl,
    text_of,
)
from ddrl_framework.types import DataBatch


@hookimpl
def register_data_sources(register):
    register("image-captions", ImageCaptions)
    register("video-captions", VideoCaptions)


def manifest_pairs(manifest: str, media_key: str) -> list[tuple[Path, str]]:
    path = existing_file(manifest, "manifest")
    pairs = []
    for row in read_jsonl(path):
        if not isinstance(row.get(media_key), str):
            raise UserError(f"{path}:{row['_line']}: no \"{media_key}\" path")
        media = (path.parent / row[media_key]).resolve()
        if not media.exists():
            raise UserError(f"{path}:{row['_line']}: {row[media_key]} does not exist (looked for {media})")
        pairs.append((media, text_of(row, path)))
    return pairs


def folder_pairs(folder: str) -> list[tuple[Path, str]]:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"[data] folder = '{folder}': no such folder")
    pairs = []
    for image in sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        caption = image.with_suffix(".txt")
        if not caption.is_file():
            raise UserError(f"{image}: no caption file {caption.name} beside it")
        pairs.append((image, caption.read_text().strip()))
    return pairs


def split(pairs: list, fraction: float, seed: int, where: str) -> tuple[list, list]:
    if len(pairs) < 2:
        raise UserError(f"{where}: {len(pairs)} pairs; need at least 2 (one to train on, one held out)")
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, int(round(fraction * len(pairs))))
    return [pairs[i] for i in order[held:]], [pairs[i] for i in order[:held]]


@attrs.frozen(kw_only=True)
class _Captions:
    manifest: str | None = None  # .jsonl: {"image" | "video": path, "caption": text} per line
    held_out_fraction: float = attrs.field(default=0.1, validator=attrs.validators.and_(
        attrs.validators.gt(0.0), attrs.validators.lt(1.0)))
    split_seed: int = 0
    _train: list = attrs.field(init=False, repr=False)
    _held_out: list = attrs.field(init=False, repr=False)

    def _pairs(self) -> list[tuple[Path, str]]:
        raise NotImplementedError

    def _load(self, path: Path) -> torch.Tensor:
        raise NotImplementedError

    def __attrs_post_init__(self) -> None:
        train, held = split(self._pairs(), self.held_out_fraction, self.split_seed, "[data]")
        object.__setattr__(self, "_train", train)
        object.__setattr__(self, "_held_out", held)

    def _batch(self, pairs: Sequence[tuple[Path, str]]) -> DataBatch:
        return DataBatch(prompts=tuple(c for _, c in pairs), x0=torch.stack([self._load(p) for p, _ in pairs]))

    def loader(self, batch_size: int, seed: int) -> BatchLoader:
        return BatchLoader(len(self._train), batch_size, seed,
                           lambda positions: self._batch([self._train[i] for i in positions]))

    def held_out(self) -> DataBatch:
        return self._batch(self._held_out)


@attrs.frozen(kw_only=True)
class ImageCaptions(_Captions):
    folder: str | None = None  # instead of a manifest: images with same-named .txt captions
    resolution: int = attrs.field(default=512, validator=attrs.validators.ge(1))  # square, center crop

    def _pairs(self):
        if (self.manifest is None) == (self.folder is None):
            raise UserError("[data] image-captions: give either manifest = \"...jsonl\" or folder = \"...\"")
        return manifest_pairs(self.manifest, "image") if self.manifest else folder_pairs(self.folder)

    def _load(self, path):
        return load_image(path, self.resolution, self.resolution)


@attrs.frozen(kw_only=True)
class VideoCaptions(_Captions):
    frames: int = attrs.field(default=81, validator=attrs.validators.ge(1))
    height: int = attrs.field(default=480, validator=attrs.validators.ge(1))
    width: int = attrs.field(default=832, validator=attrs.validators.ge(1))

    def _pairs(self):
        if self.manifest is None:
            raise UserError("[data] video-captions needs manifest = \"...jsonl\"")
        return manifest_pairs(self.manifest, "video")

    def _load(self, path):
        return load_video(path, self.frames, self.height, self.width)
