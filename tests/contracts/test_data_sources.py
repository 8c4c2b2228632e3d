"""Prompt lists, image and video caption data, and reference samples: the contract, the file
formats, and the errors that name the file and line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from ddrl_framework.errors import UserError
from ddrl_framework.testing import DataSourceContract
from tests.conftest import build


def _write_image(path, seed, size=(20, 12)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    (root / "prompts.txt").write_text("".join(f"prompt {i}\n" for i in range(12)) + "\n")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(6)))
    (root / "images").mkdir()
    rows = []
    for i in range(10):
        _write_image(root / "images" / f"{i}.png", i)
        (root / "images" / f"{i}.txt").write_text(f"caption {i}")
        rows.append({"image": f"images/{i}.png", "caption": f"caption {i}"})
    (root / "images.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    videos = []
    for i in range(8):
        frames = [Image.fromarray(np.full((10, 10, 3), 30 * t + i, dtype=np.uint8)) for t in range(6)]
        if i % 3 == 0:
            frames[0].save(root / f"v{i}.gif", save_all=True, append_images=frames[1:])
            name = f"v{i}.gif"
        elif i % 3 == 1:
            np.save(root / f"v{i}.npy", np.stack([np.asarray(f) for f in frames]))
            name = f"v{i}.npy"
        else:
            (root / f"v{i}").mkdir()
            for t, frame in enumerate(frames):
                frame.save(root / f"v{i}" / f"{t:03d}.png")
            name = f"v{i}"
        videos.append({"video": name, "caption": f"video {i}"})
    (root / "videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in videos))
    return root


class _WithMedia(DataSourceContract):
    root = None

    @pytest.fixture(autouse=True)
    def _media(self, media):
        type(self).root = media


class TestPromptFile(_WithMedia):
    def make_data_source(self):
        return build("data", "prompts", file=str(self.root / "prompts.txt"), held_out_count=4)


class TestPromptsInline(DataSourceContract):
    def make_data_source(self):
        return build("data", "prompts", prompts=[f"a photo of {x}" for x in "abcdefgh"])


class TestImageCaptionManifest(_WithMedia):
    batch_size = 4

    def make_data_source(self):
        return build("data", "image-captions", manifest=str(self.root / "images.jsonl"), resolution=8)


class TestImageCaptionFolder(_WithMedia):
    batch_size = 4

    def make_data_source(self):
        return build("data", "image-captions", folder=str(self.root / "images"), resolution=8, held_out_fraction=0.3)


class TestVideoCaptions(_WithMedia):
    batch_size = 3

    def make_data_source(self):
        return build("data", "video-captions", manifest=str(self.root / "videos.jsonl"), frames=3, height=8, width=8)


def test_prompt_files_in_both_formats(media):
    assert build("data", "prompts", file=str(media / "prompts.jsonl")).held_out().prompts == tuple(f"p{i}" for i in range(6))
    assert len(build("data", "prompts", file=str(media / "prompts.txt"), held_out_count=3).held_out()) == 3


def test_images_are_resized_center_cropped_and_paired_with_their_captions(media):
    source = build("data", "image-captions", manifest=str(media / "images.jsonl"), resolution=6)
    batch = next(source.loader(4, seed=0))
    assert batch.x0.shape == (4, 3, 6, 6) and 0 <= batch.x0.min() and batch.x0.max() <= 1
    for prompt, pixels in zip(batch.prompts, batch.x0):
        index = int(prompt.split()[-1])
        original = torch.from_numpy(np.asarray(Image.open(media / "images" / f"{index}.png"),
                                                dtype=np.float32) / 255).permute(2, 0, 1)
        resized = TF.center_crop(TF.resize(original, 6, antialias=True), 6)  # torchvision's recipe
        assert torch.allclose(pixels, resized, atol=1e-5)


def test_videos_are_channel_first_frames_in_order(media):
    source = build("data", "video-captions", manifest=str(media / "videos.jsonl"), frames=6, height=10, width=10,
                   held_out_fraction=0.5)
    held = source.held_out()
    assert held.x0.shape == (4, 3, 6, 10, 10)
    for prompt, video in zip(held.prompts, held.x0):
        i = int(prompt.split()[-1])
        expected = torch.tensor([(30 * t + i) / 255 for t in range(6)])
        assert torch.allclose(video[0, :, 5, 5], expected, atol=1e-5)


def test_bad_data_files_name_the_file_and_line(media, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build("data", "prompts", file=str(tmp_path / "missing.txt"))
    with pytest.raises(UserError, match="either file"):
        build("data", "prompts")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "caption": "a"}\nnot json\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not a JSON object"):
        build("data", "image-captions", manifest=str(bad))
    bad.write_text('{"image": "x.png", "caption": "a"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:1: x.png does not exist"):
        build("data", "image-captions", manifest=str(bad))
    bad.write_text('{"caption": "a"}\n')
    with pytest.raises(UserError, match=r'bad.jsonl:1: no "image" path'):
        build("data", "image-captions", manifest=str(bad))
    (tmp_path / "lonely.png").write_bytes((media / "images" / "0.png").read_bytes())
    with pytest.raises(UserError, match="no caption file lonely.txt"):
        build("data", "image-captions", folder=str(tmp_path))
    with pytest.raises(UserError, match="fewer than the 9 asked for"):
        source = build("data", "video-captions", manifest=str(media / "videos.jsonl"), frames=9, height=8, width=8)
        next(source.loader(2, seed=0))


class TestReferenceSamples(DataSourceContract):
    def make_data_source(self):
        from ddrl_plugins.policies.unet2d import build_unet2d_policy
        from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

        source = build("data", "reference-samples", prompts=["a", "b", "c"], samples_per_prompt=4, held_out_count=2)
        policy = build_unet2d_policy(block_out_channels=(8, 16), norm_num_groups=4)
        source.prepare(policy, DdimSdeSampler(denoising_steps=2), "tiny-unet", show_progress=False)
        return source


def test_reference_samples_are_the_policys_samples_generated_once(monkeypatch):
    from ddrl_plugins.policies.unet2d import build_unet2d_policy
    from ddrl_plugins.samplers.ddim_sde import DdimSdeSampler

    policy = build_unet2d_policy(block_out_channels=(8, 16), norm_num_groups=4)
    sampler = DdimSdeSampler(denoising_steps=2)
    source = build("data", "reference-samples", prompts=["a", "b"], samples_per_prompt=3, held_out_count=1, seed=5)
    source.prepare(policy, sampler, "identity-1", show_progress=False)
    data = source.held_out()
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn((6, *policy.sample_shape), generator=generator)
    with torch.no_grad():
        expected = policy.decode(sampler.rollout(policy, None, noise, generator).final)
    assert data.prompts == ("b",)
    assert torch.allclose(data.x0[0], (expected[-1] * 255).round() / 255)
    monkeypatch.setattr(type(source), "_generate", lambda *a: pytest.fail("regenerated a cached set"))
    again = build("data", "reference-samples", prompts=["a", "b"], samples_per_prompt=3, held_out_count=1, seed=5)
    again.prepare(policy, sampler, "identity-1", show_progress=False)
    assert torch.equal(again.held_out().x0, data.x0)
