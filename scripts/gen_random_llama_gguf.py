#!/usr/bin/env python3
"""Writes a random-weight Llama-architecture GGUF of a real model's shape, for benchmarks where
the real checkpoint cannot travel (the GPU machine has no network and takes at most 64 MiB).

Weights are f16 (the CUDA backend converts every type to bf16 at load, so speed does not depend on
the stored type); there is no tokenizer, so run the engine with --skip-tokenizer-init (the
benchmarks feed random token ids).

  python3 scripts/gen_random_llama_gguf.py --shape smollm2-135m out.gguf
  python3 scripts/gen_random_llama_gguf.py --shape llama-1b out.gguf
  python3 scripts/gen_random_llama_gguf.py --shape llama3-8b out.gguf   (16 GB, a minute or two)

Needs numpy and gguf-py (pip's `gguf`).
"""
import argparse

import numpy as np
import gguf

# name: (hidden, layers, heads, kv_heads, ffn, vocab, context, rope_theta, tied)
SHAPES = {
    "smollm2-135m": (576, 30, 9, 3, 1536, 49152, 8192, 100000.0, True),
    # TinyLlama-1.1B's shape (Llama 2 architecture, GQA 32/4).
    "llama-1b": (2048, 22, 32, 4, 5632, 32000, 2048, 10000.0, False),
    # Llama-3.2-1B's shape.
    "llama3-1b": (2048, 16, 32, 8, 8192, 128256, 8192, 500000.0, True),
    # Llama-3-8B's shape (the speed targets are set on it): 16 GB of f16.
    "llama3-8b": (4096, 32, 32, 8, 14336, 128256, 8192, 500000.0, False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("out")
    a = ap.parse_args()
    h, layers, heads, kv_heads, ffn, vocab, ctx, theta, tied = SHAPES[a.shape]
    head_dim = h // heads
    rng = np.random.default_rng(a.seed)

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) / np.sqrt(cols)).astype(np.float16)

    def norm():
        return rng.uniform(0.8, 1.2, h).astype(np.float32)

    w = gguf.GGUFWriter(a.out, "llama")
    w.add_type("model")
    w.add_name(f"random {a.shape}")
    w.add_block_count(layers)
    w.add_context_length(ctx)
    w.add_embedding_length(h)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(head_dim)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", (rng.standard_normal((vocab, h), dtype=np.float32) * 0.02).astype(np.float16))
    kv = kv_heads * head_dim
    for i in range(layers):
        w.add_tensor(f"blk.{i}.attn_norm.weight", norm())
        w.add_tensor(f"blk.{i}.attn_q.weight", matrix(h, h))
        w.add_tensor(f"blk.{i}.attn_k.weight", matrix(kv, h))
        w.add_tensor(f"blk.{i}.attn_v.weight", matrix(kv, h))
        w.add_tensor(f"blk.{i}.attn_output.weight", matrix(h, h))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", norm())
        w.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(ffn, h))
        w.add_tensor(f"blk.{i}.ffn_up.weight", matrix(ffn, h))
        w.add_tensor(f"blk.{i}.ffn_down.weight", matrix(h, ffn))
    w.add_tensor("output_norm.weight", norm())
    if not tied:
        w.add_tensor("output.weight", matrix(vocab, h))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
