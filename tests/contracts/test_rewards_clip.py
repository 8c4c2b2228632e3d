"""open_clip rewards on tiny random models written by the tests, and the remote reward against a
server on loopback."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ddrl_framework.errors import UserError
from ddrl_framework.testing import RewardModelContract
from ddrl_plugins.rewards.clip_rewards import aesthetic_head
from ddrl_plugins.rewards.remote import decode_png_base64
from tests.conftest import build

TINY = "ddrl-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(config file, checkpoint file, HPS-style checkpoint, aesthetic head file, the model)."""
    folder = tmp_path_factory.mktemp("clip")
    config = folder / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY).eval()
    torch.save(model.state_dict(), folder / "tiny.pt")
    torch.save({"state_dict": model.state_dict()}, folder / "hps.pt")  # HPS v2's layout
    head = aesthetic_head(16)
    torch.save({f"layers.{k}": v for k, v in head.state_dict().items()}, folder / "head.pth")
    return config, folder / "tiny.pt", folder / "hps.pt", folder / "head.pth", model


@pytest.fixture(autouse=True)
def _tiny_clip_for_contracts(request, tiny_clip):
    if isinstance(request.instance, _Clip):
        request.instance.files = tiny_clip


class _Clip(RewardModelContract):
    name, extra = "clip-score", {}
    files = None

    def options(self):
        config, checkpoint, hps, head, _ = self.files
        values = {"model": TINY, "model_config": str(config), "pretrained": str(checkpoint)}
        if self.name == "hpsv2":
            values = {"model": TINY, "model_config": str(config), "checkpoint": str(hps)}
        if self.name == "aesthetic":
            values["head"] = str(head)
        return {**values, **self.extra}

    def make_reward(self):
        return build("reward", self.name, **self.options())


class TestClipScore(_Clip):
    pass


class TestHpsv2(_Clip):
    name = "hpsv2"


class TestAesthetic(_Clip):
    name = "aesthetic"


class TestVideoClipScore(_Clip):
    name = "video-clip-score"

    def make_samples(self):
        return torch.rand((2, 3, 3, 16, 16), generator=torch.Generator().manual_seed(0))


class TestTemporalConsistency(TestVideoClipScore):
    name = "temporal-consistency"


def _quantized_images(n=3, size=32):
    return (torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(1)) * 255).round() / 255


def test_clip_score_is_the_cosine_under_open_clips_own_preprocessing(tiny_clip):
    config, checkpoint, _, _, model = tiny_clip
    reward = build("reward", "clip-score", model=TINY, model_config=str(config), pretrained=str(checkpoint))
    images, prompts = _quantized_images(), ("a cat", "a red square", "digit 3")
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    pil = [Image.fromarray((i.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for i in images]
    with torch.no_grad():
        image_features = F.normalize(model.encode_image(torch.stack([preprocess(p) for p in pil])), dim=-1)
        text_features = F.normalize(model.encode_text(open_clip.get_tokenizer(TINY)(list(prompts))), dim=-1)
    expected = (image_features * text_features).sum(-1)
    assert torch.allclose(reward(images, prompts, {}), expected, atol=1e-5)


def test_hpsv2_reads_a_state_dict_checkpoint_and_equals_the_clip_score_of_its_weights(tiny_clip):
    config, checkpoint, hps, _, _ = tiny_clip
    images, prompts = _quantized_images(), ("a", "b", "c")
    plain = build("reward", "clip-score", model=TINY, model_config=str(config), pretrained=str(checkpoint))
    hpsv2 = build("reward", "hpsv2", model=TINY, model_config=str(config), checkpoint=str(hps))
    assert torch.allclose(hpsv2(images, prompts, {}), plain(images, prompts, {}))


def test_aesthetic_is_the_head_on_the_normalized_embedding(tiny_clip):
    config, checkpoint, _, head_file, model = tiny_clip
    reward = build("reward", "aesthetic", model=TINY, model_config=str(config), pretrained=str(checkpoint),
                   head=str(head_file))
    head = aesthetic_head(16)
    head.load_state_dict({k.removeprefix("layers."): v for k, v in torch.load(head_file).items()})
    images = _quantized_images()
    embeddings = reward.image_embeddings(images)
    with torch.no_grad():
        assert torch.allclose(reward(images, ("",) * 3, {}), head.eval()(embeddings).squeeze(-1))


def test_video_rewards_reduce_to_image_rewards_on_still_videos(tiny_clip):
    config, checkpoint, _, _, _ = tiny_clip
    options = {"model": TINY, "model_config": str(config), "pretrained": str(checkpoint)}
    images, prompts = _quantized_images(2), ("a", "b")
    still = images.unsqueeze(2).expand(-1, -1, 4, -1, -1)
    assert torch.allclose(build("reward", "video-clip-score", **options)(still, prompts, {}),
                          build("reward", "clip-score", **options)(images, prompts, {}), atol=1e-6)
    assert torch.allclose(build("reward", "temporal-consistency", **options)(still, prompts, {}), torch.ones(2))


def test_bad_clip_options_are_user_errors(tiny_clip, tmp_path):
    config, *_ = tiny_clip
    with pytest.raises(UserError, match="no model 'ViT-Nope'"):
        build("reward", "clip-score", model="ViT-Nope", pretrained=None)(_quantized_images(1), ("a",), {})
    with pytest.raises(UserError, match="no such file"):
        build("reward", "hpsv2", checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="takes images"):
        build("reward", "clip-score", model=TINY, model_config=str(config), pretrained=None)(
            torch.rand(1, 3, 2, 8, 8), ("a",), {})


class _Judge(BaseHTTPRequestHandler):
    """Scores each sample by its mean intensity; fails the first ``failures`` requests with 503."""

    failures = 0
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if type(self).failures > 0:
            type(self).failures -= 1
            self.send_response(503)
            self.end_headers()
            return
        per_sample = len(body["images"]) // len(body["prompts"])
        means = [float(decode_png_base64(i).mean()) for i in body["images"]]
        rewards = [sum(means[i * per_sample:(i + 1) * per_sample]) / per_sample for i in range(len(body["prompts"]))]
        payload = json.dumps({"rewards": rewards}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge():
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Judge.failures, _Judge.requests = 0, []
    yield f"http://127.0.0.1:{server.server_address[1]}/score"
    server.shutdown()


class TestRemote(RewardModelContract):
    url = None

    @pytest.fixture(autouse=True)
    def _server(self, judge):
        type(self).url = judge

    def make_reward(self):
        return build("reward", "remote", url=self.url, backoff=0.0)


def test_remote_reward_round_trips_images_and_videos(judge):
    reward = build("reward", "remote", url=judge, backoff=0.0)
    images = _quantized_images(3, 8)
    assert torch.allclose(reward(images, ("a", "b", "c"), {}), images.flatten(1).mean(1), atol=1e-6)
    videos = torch.rand((2, 3, 4, 8, 8))
    assert torch.allclose(reward(videos, ("a", "b"), {}), videos.flatten(1).mean(1), atol=3e-3)
    assert _Judge.requests[-1]["shape"] == [3, 4, 8, 8] and len(_Judge.requests[-1]["images"]) == 8


def test_remote_reward_retries_a_busy_server_then_names_it(judge):
    _Judge.failures = 2
    assert build("reward", "remote", url=judge, retries=2, backoff=0.0)(_quantized_images(1, 8), ("a",), {}).shape == (1,)
    _Judge.failures = 5
    with pytest.raises(RuntimeError, match=f"reward server {judge} answered HTTP 503"):
        build("reward", "remote", url=judge, retries=1, backoff=0.0)(_quantized_images(1, 8), ("a",), {})


def test_remote_reward_names_an_unreachable_server():
    with pytest.raises(RuntimeError, match="127.0.0.1:9/score unreachable after 2 tries"):
        build("reward", "remote", url="http://127.0.0.1:9/score", retries=1, backoff=0.0, timeout=2.0)(
            _quantized_images(1, 8), ("a",), {})
