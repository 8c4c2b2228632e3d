"""Every built-in plugin passes the contract suite of its protocol."""

import pytest

from ddrl_framework.testing import (
    DataSourceContract,
    PolicyContract,
    RegularizerContract,
    RewardModelContract,
    SamplerContract,
)
from tests.conftest import build, registry

TINY_UNET = {"block_out_channels": (8, 16), "norm_num_groups": 4}


class TestUnet2DPolicy(PolicyContract):
    def make_policy(self):
        return build("policy", "unet2d", **TINY_UNET)

    def load_policy(self, directory):
        return build("policy", "unet2d", pretrained=str(directory))


class TestUnet2DClassConditional(TestUnet2DPolicy):
    def make_policy(self):
        return build("policy", "unet2d", num_classes=3, **TINY_UNET)


class TestUnet2DVPrediction(TestUnet2DPolicy):
    def make_policy(self):
        return build("policy", "unet2d", prediction_type="v_prediction", **TINY_UNET)


class TestDdimSde(SamplerContract):
    def make_sampler(self):
        return build("sampler", "ddim-sde", denoising_steps=5, eta=1.0)


class TestDdimSdeOnUnet(SamplerContract):
    def make_sampler(self):
        return build("sampler", "ddim-sde", denoising_steps=3, eta=0.7)

    def make_policy(self):
        return build("policy", "unet2d", **TINY_UNET)


@pytest.mark.parametrize("name", ["brightness", "jpeg-compressibility", "jpeg-incompressibility",
                                  "digit-log-prob"])
def test_reward_names_are_registered(name):
    assert name in registry().names("reward")


class TestBrightness(RewardModelContract):
    def make_reward(self):
        return build("reward", "brightness")


class TestJpegCompressibility(RewardModelContract):
    def make_reward(self):
        return build("reward", "jpeg-compressibility")


class TestJpegIncompressibility(RewardModelContract):
    def make_reward(self):
        return build("reward", "jpeg-incompressibility", quality=80)


class TestDigitLogProb(RewardModelContract):
    def make_reward(self):
        return build("reward", "digit-log-prob")


class TestNoRegularizer(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "none")


class TestReverseKL(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "reverse-kl", beta=0.1)


class TestForwardKLData(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "forward-kl-data", beta=0.1)


class TestForwardKLDataFreshNoise(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "forward-kl-data", beta=0.1, noise="fresh", every_step=False)


class TestForwardKLDataPaperUnit(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "forward-kl-data", beta=3.0, unit="paper")


class TestForwardKLDataNatsOnDdim(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "forward-kl-data", beta=0.1, unit="nats")

    def make_sampler(self):
        return build("sampler", "ddim-sde", denoising_steps=4)


class TestKLInReward(RegularizerContract):
    def make_regularizer(self):
        return build("regularizer", "kl-in-reward", beta=0.1)


class TestSklearnDigits(DataSourceContract):
    def make_data_source(self):
        return build("data", "sklearn-digits")


class TestSklearnDigitsUpsampled(DataSourceContract):
    def make_data_source(self):
        return build("data", "sklearn-digits", size=16, held_out_fraction=0.5)


class TestSklearnDigitsWithoutThrees(DataSourceContract):
    def make_data_source(self):
        return build("data", "sklearn-digits", classes=[0, 1, 2, 4, 5, 6, 7, 8, 9])
