"""Which linear layers of each denoiser family LoRA adapts by default (peft ``target_modules``,
matched as name suffixes). A backbone names its preset (``DiffusersPolicy.lora_targets``);
the ``lora_target_modules`` option overrides it."""

from __future__ import annotations

# attention projections: SD's UNet, SD3's and Wan's transformers (the default)
ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")

# FLUX.1: the joint blocks' image and text attention and feed-forwards, the single blocks'
# attention and MLP input (their fused ``proj_out`` is left out: the name also matches the
# model's final projection)
FLUX = ATTENTION + ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff.net.0.proj", "ff.net.2",
                    "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp")

# Qwen-Image: the dual-stream blocks' image and text attention and MLPs
QWEN_IMAGE = ATTENTION + ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "img_mlp.net.0.proj",
                          "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2")

# FLUX.2: the joint blocks' image and text attention and SwiGLU feed-forwards, the single blocks'
# fused QKV-and-MLP input projection (their fused ``to_out`` is left out: the suffix also names the
# joint blocks' ``to_out`` list, which LoRA cannot wrap)
FLUX2 = ATTENTION + ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff.linear_in", "ff.linear_out",
                     "ff_context.linear_in", "ff_context.linear_out", "to_qkv_mlp_proj")
