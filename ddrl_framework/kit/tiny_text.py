"""Tiny random text encoders and tokenizers for the tiny configurations of the diffusers
backbones: real transformers classes, built offline (no vocabulary download), small enough for a
CPU. Their weights are random, so their embeddings carry no meaning, only the right shapes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from ddrl_framework.kit.seeding import seeded


CLIP_LENGTH = 77  # CLIP's context, so a prompt of up to 75 characters is never truncated


def clip_tokenizer(max_length: int = CLIP_LENGTH) -> CLIPTokenizer:
    """A character-level CLIP tokenizer (byte alphabet, no merges): 514 tokens, one per character."""
    chars = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.json").write_text(json.dumps(vocab))
        Path(folder, "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(Path(folder, "vocab.json")), str(Path(folder, "merges.txt")),
                             model_max_length=max_length)


def t5_tokenizer(max_length: int = 512) -> T5Tokenizer:
    """A character-level T5 (sentencepiece-style unigram) tokenizer: lower-case letters, digits."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def clip_text_model(hidden: int, seed: int, with_projection: bool = False, projection: int = 0):
    config = CLIPTextConfig(
        vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=CLIP_LENGTH, bos_token_id=512, eos_token_id=513,
        pad_token_id=513, projection_dim=projection or hidden)
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return seeded(seed, lambda: cls(config).eval())


def t5_encoder(d_model: int, seed: int, umt5: bool = False):
    kwargs = dict(vocab_size=40, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=1,
                  num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
    if umt5:
        return seeded(seed, lambda: UMT5EncoderModel(UMT5Config(**kwargs)).eval())
    return seeded(seed, lambda: T5EncoderModel(T5Config(**kwargs)).eval())


QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")  # what Qwen-Image's prompt template uses


# Qwen3's chat template for one user turn with thinking off (what FLUX.2's text encoding applies)
QWEN3_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


def qwen_tokenizer(chat_template: str | None = None) -> Qwen2Tokenizer:
    """A character-level Qwen2 tokenizer (byte alphabet, no merges) with the chat-template tokens
    (``chat_template``: for pipelines that call ``apply_chat_template``, e.g. :data:`QWEN3_CHAT_TEMPLATE`)."""
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for token in QWEN_SPECIALS:
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=[], chat_template=chat_template)


def qwen_vl_model(hidden: int, seed: int, heads: int = 2,
                  mrope_section: tuple[int, int, int] = (2, 2, 4)) -> Qwen2_5_VLForConditionalGeneration:
    """A one-layer Qwen2.5-VL (the vision tower is built, never used: Qwen-Image reads text only).
    ``heads`` and ``mrope_section`` go together (the real 7B's: 28 heads of 128, (16, 24, 24))."""
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": 256 + len(QWEN_SPECIALS), "hidden_size": hidden, "intermediate_size": 2 * hidden,
                     "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": 2,
                     "max_position_embeddings": 1024, "bos_token_id": 256, "eos_token_id": 258, "pad_token_id": 256,
                     "rope_parameters": {"rope_type": "default", "mrope_section": list(mrope_section),
                                         "rope_theta": 10000.0}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                       "out_hidden_size": hidden, "patch_size": 4, "temporal_patch_size": 2, "spatial_merge_size": 2})
    return seeded(seed, lambda: Qwen2_5_VLForConditionalGeneration(config).eval())


def qwen3_model(hidden: int, seed: int, layers: int = 3) -> Any:
    """A ``layers``-layer Qwen3 language model (FLUX.2 reads its hidden states, one per layer) for
    :func:`qwen_tokenizer`'s vocabulary, with room for 512 text tokens. (Imported here: only FLUX.2
    needs a transformers with Qwen3.)"""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=256 + len(QWEN_SPECIALS), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2, head_dim=hidden // 2,
        max_position_embeddings=1024, bos_token_id=256, eos_token_id=258, pad_token_id=256)
    return seeded(seed, lambda: Qwen3ForCausalLM(config).eval())
