#!/usr/bin/env python3
"""Writes a random-weight Hugging Face Llama checkpoint (config.json + bf16 safetensors shards +
index) of a real model's shape, where it will run: the GPU machine has no network and takes at
most 64 MiB of files, so a Llama-3-8B-shaped model (16 GB) is made there. Weights are drawn on the
GPU when there is one (seconds), else on the CPU. There is no tokenizer: run the engine with
--skip-tokenizer-init.

  python3 scripts/gen_random_hf_checkpoint.py --shape llama3-8b /tmp/llama3-8b-hf

Shapes are those of gen_random_llama_gguf.py. Needs torch and safetensors.
"""
import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_random_llama_gguf import SHAPES  # noqa: E402

SHARD_BYTES = 4 << 30


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("out")
    a = ap.parse_args()
    h, layers, heads, kv_heads, ffn, vocab, ctx, theta, tied = SHAPES[a.shape]
    head_dim = h // heads
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=device).manual_seed(a.seed)

    def matrix(rows, cols):
        w = torch.randn(rows, cols, generator=gen, device=device, dtype=torch.float32)
        return (w / cols ** 0.5).to(torch.bfloat16).cpu()

    def norm():
        w = torch.rand(h, generator=gen, device=device, dtype=torch.float32) * 0.4 + 0.8
        return w.to(torch.bfloat16).cpu()

    def tensors():
        yield "model.embed_tokens.weight", matrix(vocab, h)
        for i in range(layers):
            p = f"model.layers.{i}."
            yield p + "input_layernorm.weight", norm()
            yield p + "self_attn.q_proj.weight", matrix(heads * head_dim, h)
            yield p + "self_attn.k_proj.weight", matrix(kv_heads * head_dim, h)
            yield p + "self_attn.v_proj.weight", matrix(kv_heads * head_dim, h)
            yield p + "self_attn.o_proj.weight", matrix(h, heads * head_dim)
            yield p + "post_attention_layernorm.weight", norm()
            yield p + "mlp.gate_proj.weight", matrix(ffn, h)
            yield p + "mlp.up_proj.weight", matrix(ffn, h)
            yield p + "mlp.down_proj.weight", matrix(h, ffn)
        yield "model.norm.weight", norm()
        if not tied:
            yield "lm_head.weight", matrix(vocab, h)

    os.makedirs(a.out, exist_ok=True)
    shards, current, size = [], {}, 0
    for name, t in tensors():
        nbytes = t.numel() * t.element_size()
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, os.path.join(a.out, fname), metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * t.element_size()
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": h,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "max_position_embeddings": ctx,
        "rope_theta": theta,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(f"wrote {a.out}: {len(shards)} shards, {total / 1e9:.1f} GB, random {a.shape}")


if __name__ == "__main__":
    main()
