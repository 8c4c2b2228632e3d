"""Reading the files that prompt and caption data sources point at, with errors that name the
file, the line and what would be right."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ddrl_framework.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TEXT_KEYS = ("prompt", "caption", "text")


def existing_file(path: str, option: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"[data] {option} = '{path}': no such file")
    return file


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{number}: not a JSON object ({error.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: expected a JSON object per line")
        rows.append({**row, "_line": number})
    return rows


def text_of(row: dict, path: Path) -> str:
    for key in TEXT_KEYS:
        if isinstance(row.get(key), str):
            return row[key]
    raise UserError(f"{path}:{row['_line']}: no text: give a \"prompt\" or \"caption\" string")


def read_prompts(path: Path) -> list[str]:
    """A ``.txt`` file (one prompt per line) or a ``.jsonl`` file (a "prompt" or "caption" key)."""
    if path.suffix == ".jsonl":
        prompts = [text_of(row, path) for row in read_jsonl(path)]
    else:
        prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise UserError(f"{path}: no prompts in the file")
    return prompts


def _to_tensor(image) -> Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def resize_crop(pixels: Tensor, height: int, width: int) -> Tensor:
    """``[..., C, h, w]`` resized so that it covers ``height x width``, then center-cropped."""
    h, w = pixels.shape[-2:]
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    flat = pixels.reshape(-1, *pixels.shape[-3:])
    flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    flat = flat[..., top : top + height, left : left + width]
    return flat.reshape(*pixels.shape[:-2], height, width).clamp(0, 1)


def load_image(path: Path, height: int, width: int) -> Tensor:
    """``[3, height, width]`` in [0, 1]."""
    from PIL import Image  # PIL loads with the first image, not with the plugins that use this module

    try:
        with Image.open(path) as image:
            return resize_crop(_to_tensor(image), height, width)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read the image ({error})") from None


def _video_frames(path: Path) -> Tensor:
    from PIL import Image, ImageSequence

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{path}: a frame folder with no images")
        frames = []
        for file in files:
            with Image.open(file) as image:
                frames.append(_to_tensor(image))
        return torch.stack(frames)
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 4 or array.shape[-1] != 3:
            raise UserError(f"{path}: expected a [T, H, W, 3] uint8 array, got shape {array.shape}")
        return torch.from_numpy(array.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    with Image.open(path) as image:
        return torch.stack([_to_tensor(frame) for frame in ImageSequence.Iterator(image)])


def load_video(path: Path, frames: int, height: int, width: int) -> Tensor:
    """``[3, frames, height, width]`` in [0, 1]: ``frames`` evenly spaced frames of a frame folder,
    an animated GIF/WebP or a ``.npy`` array."""
    try:
        video = _video_frames(path)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read the video ({error})") from None
    if video.shape[0] < frames:
        raise UserError(f"{path}: {video.shape[0]} frames, fewer than the {frames} asked for")
    index = torch.linspace(0, video.shape[0] - 1, frames).round().long()
    return resize_crop(video[index], height, width).permute(1, 0, 2, 3)


def load_prompt_list(file: str | None, prompts: tuple[str, ...]) -> list[str]:
    if (file is None) == (not prompts):
        raise UserError("[data] give either file = \"prompts.txt\" or prompts = [\"...\"], not both or neither")
    return read_prompts(existing_file(file, "file")) if file is not None else list(prompts)
