"""The complete backbone in docs/backbones.md ("A complete backbone": PixArt-Sigma, which the
framework does not ship) works as written: the policy and sampler contracts, and the fidelity
check against ``PixArtSigmaPipeline.__call__`` with and without guidance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ddrl_framework.registry import load_registry
from ddrl_framework.testing import PolicyContract, SamplerContract
from ddrl_framework.testing.pipeline_fidelity import check_matches_pipeline

DOC = Path(__file__).resolve().parents[2] / "docs" / "backbones.md"
MARKER = "<!-- example: backbone -->\n```python\n"


def example_module():
    """The doc's block, imported as module ``pixart_sigma_example``."""
    text = DOC.read_text()
    assert MARKER in text, f"{DOC.name} lost its '<!-- example: backbone -->' block"
    code = text.split(MARKER, 1)[1].split("\n```", 1)[0]
    if "pixart_sigma_example" not in sys.modules:
        spec = importlib.util.spec_from_loader("pixart_sigma_example", loader=None)
        module = importlib.util.module_from_spec(spec)
        exec(compile(code, str(DOC), "exec"), module.__dict__)
        sys.modules["pixart_sigma_example"] = module
    return sys.modules["pixart_sigma_example"]


def ddim(steps: int = 4):
    return load_registry().build("sampler", "ddim-sde", {"denoising_steps": steps}, "[sampler]")


class TestTheDocsBackbone(PolicyContract):
    def make_policy(self):
        return example_module().build_pixart_sigma_policy()

    def load_policy(self, directory):
        return example_module().build_pixart_sigma_policy(pretrained=str(directory))


class TestDdimSdeOnTheDocsBackbone(SamplerContract):
    def make_sampler(self):
        return ddim(3)

    def make_policy(self):
        return example_module().build_pixart_sigma_policy(guidance_scale=3.0)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_the_docs_backbone_samples_as_its_pipeline(guidance_scale):
    policy = example_module().build_pixart_sigma_policy(guidance_scale=guidance_scale)
    assert check_matches_pipeline(policy, ddim()).worst == 0.0  # bitwise, as the doc says


def test_the_docs_backbone_registers_through_its_hook():
    names = []
    example_module().register_policies(lambda name, factory, **kw: names.append((name, kw)))
    assert names == [("pixart-sigma", {"forward_process": "ddpm"})]


def test_lora_on_a_denoiser_without_adapters_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="PixArtTransformer2DModel takes no peft adapters"):
        example_module().build_pixart_sigma_policy(lora_rank=2)
