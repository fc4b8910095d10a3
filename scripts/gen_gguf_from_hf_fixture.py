#!/usr/bin/env python3
"""GGUF copies of the tiny GPT-2 and Phi-3 Hugging Face fixtures, laid out as llama.cpp's
converter (convert_hf_to_gguf.py) writes those architectures, written with gguf-py.

The weights are the ones in tests/golden/data/hf/<name>/model.safetensors, so each copy shares its
checkpoint's reference JSON (hf/<name>.json, from scripts/gen_hf_model_fixtures.py): a loader that
reads the GGUF right gives the same logits. What llama.cpp's files look like (learned from
convert_hf_to_gguf.py, gguf-py/gguf/constants.py and tensor_mapping.py; no code taken from them):

GPT-2 (`general.architecture = "gpt2"`):
  keys   gpt2.block_count, context_length (n_positions), embedding_length, feed_forward_length
         (always 4 * n_embd: the converter ignores n_inner), attention.head_count,
         attention.layer_norm_epsilon
  tensors token_embd, position_embd, blk.N.attn_norm.{weight,bias}, blk.N.attn_qkv.{weight,bias}
         (c_attn: q | k | v), blk.N.attn_output (c_proj), blk.N.ffn_norm, blk.N.ffn_up (mlp.c_fc),
         blk.N.ffn_down (mlp.c_proj), output_norm.{weight,bias}, and output.weight, a copy of
         token_embd (the converter writes the tied head out).
         Conv1D weights ([in, out] in HF) are transposed to the usual [out, in] (GGUF ne = [in, out]).
Phi-3 (`general.architecture = "phi3"`):
  keys   phi3.context_length, rope.scaling.original_context_length, embedding_length,
         feed_forward_length, block_count, attention.head_count, attention.head_count_kv,
         attention.layer_norm_rms_epsilon, rope.dimension_count (rotated dims per head:
         partial_rotary_factor * head_dim), rope.freq_base, attention.sliding_window
  tensors token_embd, blk.N.attn_norm, blk.N.attn_qkv (qkv_proj, rows q | k | v),
         blk.N.attn_output, blk.N.ffn_norm, blk.N.ffn_up (gate_up_proj: rows gate | up),
         blk.N.ffn_down, output_norm, output. Q/K rows are not permuted (Phi-3 runs NeoX RoPE).
Both: `<arch>.vocab_size` (the files carry no tokenizer; the tests feed token ids), 1-D tensors
(norms, biases) in F32 as llama.cpp writes them, matrices in the checkpoint's dtype (F16 / BF16).

Output: tests/golden/data/hf/gpt2_f16.gguf, tests/golden/data/hf/phi3_bf16.gguf (deterministic).
Usage: python3 scripts/gen_gguf_from_hf_fixture.py [--data-dir DIR]
Needs: gguf (gguf-py), numpy, safetensors, torch.
"""

import argparse
import json
import os

import gguf
import numpy as np
import torch
from safetensors.torch import load_file


def load(checkpoint):
    with open(os.path.join(checkpoint, "config.json")) as f:
        config = json.load(f)
    return config, load_file(os.path.join(checkpoint, "model.safetensors"))


# name -> the float32 values each tensor must read back as (checked after writing).
WRITTEN = {}


def add_matrix(w, name, t):
    """A 2-D weight in its stored dtype (BF16 as raw 16-bit words: numpy has no bfloat16)."""
    t = t.contiguous()
    WRITTEN[name] = t.float().numpy()
    if t.dtype == torch.bfloat16:
        w.add_tensor(name, t.view(torch.int16).numpy().view(np.uint16),
                     raw_dtype=gguf.GGMLQuantizationType.BF16)
    elif t.dtype == torch.float16:
        w.add_tensor(name, t.numpy())
    else:
        w.add_tensor(name, t.float().numpy())


def add_vector(w, name, t):
    WRITTEN[name] = t.float().numpy()
    w.add_tensor(name, t.float().numpy())


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_gpt2(checkpoint, out):
    config, sd = load(checkpoint)
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    n_embd = config["n_embd"]
    w = gguf.GGUFWriter(out, "gpt2")
    w.add_name("tiny gpt2")
    w.add_block_count(config["n_layer"])
    w.add_context_length(config["n_positions"])
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(4 * n_embd)
    w.add_head_count(config["n_head"])
    w.add_layer_norm_eps(config["layer_norm_epsilon"])
    w.add_vocab_size(config["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    add_matrix(w, "token_embd.weight", sd["wte.weight"])
    add_matrix(w, "position_embd.weight", sd["wpe.weight"])
    modules = [("ln_1", "attn_norm"), ("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"),
               ("ln_2", "ffn_norm"), ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down")]
    for i in range(config["n_layer"]):
        for hf, ours in modules:
            weight = sd[f"h.{i}.{hf}.weight"]
            if weight.dim() == 2:
                add_matrix(w, f"blk.{i}.{ours}.weight", weight.t())  # Conv1D [in, out] -> [out, in]
            else:
                add_vector(w, f"blk.{i}.{ours}.weight", weight)
            add_vector(w, f"blk.{i}.{ours}.bias", sd[f"h.{i}.{hf}.bias"])
    add_vector(w, "output_norm.weight", sd["ln_f.weight"])
    add_vector(w, "output_norm.bias", sd["ln_f.bias"])
    if not config.get("tie_word_embeddings", True):
        raise SystemExit("GPT-2 fixtures are tied; the converter's copy below assumes it")
    add_matrix(w, "output.weight", sd["wte.weight"])
    finish(w)


def write_phi3(checkpoint, out):
    config, sd = load(checkpoint)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = hidden // heads
    factor = config.get("rope_parameters", {}).get("partial_rotary_factor",
                                                   config.get("partial_rotary_factor", 1.0))
    w = gguf.GGUFWriter(out, "phi3")
    w.add_name("tiny phi3")
    w.add_context_length(config["max_position_embeddings"])
    w.add_rope_scaling_orig_ctx_len(config["original_max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_head_count(heads)
    w.add_head_count_kv(config["num_key_value_heads"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_dimension_count(int(factor * head_dim))
    w.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    w.add_sliding_window(config.get("sliding_window") or 0)
    w.add_vocab_size(config["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)

    add_matrix(w, "token_embd.weight", sd["model.embed_tokens.weight"])
    modules = [("input_layernorm", "attn_norm"), ("self_attn.qkv_proj", "attn_qkv"),
               ("self_attn.o_proj", "attn_output"), ("post_attention_layernorm", "ffn_norm"),
               ("mlp.gate_up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")]
    for i in range(config["num_hidden_layers"]):
        for hf, ours in modules:
            t = sd[f"model.layers.{i}.{hf}.weight"]
            (add_matrix if t.dim() == 2 else add_vector)(w, f"blk.{i}.{ours}.weight", t)
    add_vector(w, "output_norm.weight", sd["model.norm.weight"])
    add_matrix(w, "output.weight", sd["lm_head.weight"])
    finish(w)


def check(out):
    """Every tensor read back (and dequantized) with gguf-py is exactly what was meant to go in."""
    reader = gguf.GGUFReader(out)
    if sorted(t.name for t in reader.tensors) != sorted(WRITTEN):
        raise SystemExit(f"{out}: tensor names differ from what was written")
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if not np.array_equal(data.reshape(WRITTEN[t.name].shape), WRITTEN[t.name]):
            raise SystemExit(f"{out}: {t.name} reads back different values")
    print(f"wrote {out}: {len(reader.tensors)} tensors, {os.path.getsize(out)} bytes")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join(root, "tests", "golden", "data", "hf"))
    args = parser.parse_args()
    for name, writer in [("gpt2_f16", write_gpt2), ("phi3_bf16", write_phi3)]:
        out = os.path.join(args.data_dir, name + ".gguf")
        WRITTEN.clear()
        writer(os.path.join(args.data_dir, name), out)
        check(out)


if __name__ == "__main__":
    main()
