#!/usr/bin/env python3
"""Tiny random-weight llama GGUF models and their transformers reference outputs.

Writes tests/golden/data/tiny_llama_<variant>.gguf, laid out as llama.cpp's converter lays out a
llama model (arch "llama", the llama.* hyper-parameter keys, token_embd / blk.N.* / output_norm /
optional output tensors, a gpt2-style byte-level BPE vocabulary), one per storage-type variant, and
tests/golden/data/tiny_llama_<variant>.json with what transformers computes from the file (float32):
the config it read, per-layer hidden states, final logits, top-5 logprobs and a greedy continuation.

GGUF stores llama Q/K rows in the order that suits interleaved ("normal", adjacent pairs) RoPE. The
random Q/K weights written here count as already in that order; transformers un-permutes them on
load and uses half-split RoPE. As a guard on that convention, every variant is also run through
an independent float64 numpy forward that uses the weights exactly as stored with interleaved RoPE
(what our C++ does), and its logits must match transformers'.

K-quants (Q4_K, Q6_K): gguf-py can read but not write them, so this script has its own simple
packer (round-to-nearest scales; not llama.cpp's search); the reference still dequantizes with
gguf-py, so only the block layout matters.

Usage: python3 scripts/gen_tiny_llama.py [--out-dir DIR]
Needs: torch, transformers, tokenizers, gguf, numpy, regex, accelerate.
"""

import argparse
import hashlib
import inspect
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata

import gguf
import numpy as np
import regex
import torch
from gguf import GGMLQuantizationType as Q
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, LlamaForCausalLM

CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"

NUM_LAYERS = 2
CONTEXT_LENGTH = 256
ROPE_THETA = 10000.0
RMS_EPS = 1e-5
TOP_K = 5
NUM_NEW_TOKENS = 16
NEAR_TIE_MARGIN = 0.01
# Std of token_embd and output.weight entries. Kept small next to the layers' contributions (about
# 1 per entry), else with tied embeddings the input token dominates the residual stream and greedy
# just repeats it.
EMBEDDING_STD = 0.125
# output_norm weights are drawn from this range, to spread the logits by several units so greedy
# steps rarely sit on near ties (it does not touch the residual stream).
OUTPUT_NORM_RANGE = (2.0, 4.0)
PROMPT_LENGTHS = [1, 7, 40]
# Random prompt token ids come from this seed. Picked among seeds 1..39 as the one whose smallest
# top-1/top-2 logit gap over every greedy step of every variant is largest (0.06), so that float
# rounding differences cannot flip a greedy choice.
PROMPT_SEED = 31
FULL_HIDDEN_STATES_LENGTH = 7  # the one prompt whose hidden states are dumped at every position
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
NUM_MERGES = 41  # vocab = 3 special + 256 byte + 41 merged tokens = 300
GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

MERGE_TRAINING_TEXT = (
    "The tiny model reads the text and then it writes the answer. In the beginning there was the "
    "word, and the word was with the writer. There is nothing in the theory that the others did "
    "not think of; they then went on to the next thing, and the thing after that."
)

MATRICES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


@dataclass
class Variant:
    name: str
    seed: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    tied: bool  # no output.weight: the LM head is token_embd
    file_type: gguf.LlamaFileType
    embd_type: Q
    output_type: Q | None  # None when tied
    layer_types: list = field(default_factory=list)  # per layer: {matrix name: type}

    @property
    def head_dim(self):
        return self.hidden_size // self.num_heads


def uniform_layers(qtype):
    return [{m: qtype for m in MATRICES} for _ in range(NUM_LAYERS)]


VARIANTS = [
    # Smaller shapes than the others so the all-F32 file stays under 2 MB (head_dim 32 here).
    Variant("f32", 101, 128, 4, 2, 192, False, gguf.LlamaFileType.ALL_F32, Q.F32, Q.F32,
            uniform_layers(Q.F32)),
    Variant("q8_0", 102, 256, 4, 2, 384, True, gguf.LlamaFileType.MOSTLY_Q8_0, Q.Q8_0, None,
            uniform_layers(Q.Q8_0)),
    # Like SmolLM2-135M-Instruct.Q4_1.gguf: token_embd Q8_0, other matrices Q4_1, tied.
    Variant("q4_1", 103, 256, 4, 2, 512, True, gguf.LlamaFileType.MOSTLY_Q4_1, Q.Q8_0, None,
            uniform_layers(Q.Q4_1)),
    Variant("mixed", 104, 256, 4, 2, 256, False, gguf.LlamaFileType.MOSTLY_Q4_0, Q.F16, Q.Q4_0, [
        {"attn_q": Q.Q4_0, "attn_k": Q.Q5_0, "attn_v": Q.Q5_1, "attn_output": Q.Q4_0,
         "ffn_gate": Q.Q5_0, "ffn_up": Q.Q5_1, "ffn_down": Q.Q4_0},
        {"attn_q": Q.F16, "attn_k": Q.BF16, "attn_v": Q.F16, "attn_output": Q.BF16,
         "ffn_gate": Q.BF16, "ffn_up": Q.F16, "ffn_down": Q.BF16},
    ]),
    # Like a Q4_K_M file: Q4_K, with Q6_K for attn_v, ffn_down and the (untied) output.
    Variant("q4_k", 105, 256, 4, 2, 512, False, gguf.LlamaFileType.MOSTLY_Q4_K_M, Q.Q4_K, Q.Q6_K, [
        {"attn_q": Q.Q4_K, "attn_k": Q.Q4_K, "attn_v": Q.Q6_K, "attn_output": Q.Q4_K,
         "ffn_gate": Q.Q4_K, "ffn_up": Q.Q4_K, "ffn_down": Q.Q6_K}
        for _ in range(NUM_LAYERS)
    ]),
]


# ---------------------------------------------------------------------------------------------
# Tokenizer: GPT-2 byte-level BPE with merges learned from a fixed text.


def bytes_to_unicode():
    """GPT-2's printable stand-in character for each byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def learn_merges(text, num_merges):
    """Plain BPE training; ties go to the lexicographically smallest pair, so it is deterministic."""
    byte_chars = bytes_to_unicode()
    words = {}
    for piece in GPT2_SPLIT.findall(text):
        word = tuple(byte_chars[b] for b in piece.encode("utf-8"))
        words[word] = words.get(word, 0) + 1
    merges = []
    for _ in range(num_merges):
        counts = {}
        for word, n in words.items():
            for pair in zip(word, word[1:]):
                counts[pair] = counts.get(pair, 0) + n
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        merged_words = {}
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] = merged_words.get(tuple(out), 0) + n
        words = merged_words
    return merges


def build_vocab():
    byte_chars = bytes_to_unicode()
    merges = learn_merges(MERGE_TRAINING_TEXT, NUM_MERGES)
    tokens = SPECIAL_TOKENS + [byte_chars[b] for b in range(256)] + [a + b for a, b in merges]
    assert len(set(tokens)) == len(tokens)
    token_types = [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS) + [gguf.TokenType.NORMAL] * (
        len(tokens) - len(SPECIAL_TOKENS))
    return tokens, token_types, [f"{a} {b}" for a, b in merges]


# ---------------------------------------------------------------------------------------------
# K-quant packers (gguf-py has dequantizers only). Layouts as gguf-py's Q4_K / Q6_K dequantize.


def f16_round(x):
    return x.astype(np.float16).astype(np.float32)


def quantize_q4_k(x):  # x: [rows, cols], cols % 256 == 0 -> uint8 [rows, cols / 256 * 144]
    blocks = x.reshape(-1, 8, 32).astype(np.float32)  # [n_blocks, sub-block, element]
    lo = np.minimum(blocks.min(axis=-1), 0.0)  # the offset is -dmin*m with m >= 0, so min <= 0
    hi = blocks.max(axis=-1)
    sub_scale = (hi - lo) / 15.0
    sub_min = -lo
    d = f16_round(sub_scale.max(axis=-1) / 63.0)
    dmin = f16_round(sub_min.max(axis=-1) / 63.0)
    sc = np.clip(np.rint(np.divide(sub_scale, d[:, None], out=np.zeros_like(sub_scale),
                                   where=d[:, None] > 0)), 0, 63).astype(np.uint8)
    m = np.clip(np.rint(np.divide(sub_min, dmin[:, None], out=np.zeros_like(sub_min),
                                  where=dmin[:, None] > 0)), 0, 63).astype(np.uint8)
    step = (d[:, None] * sc)[..., None]
    offset = (dmin[:, None] * m)[..., None]
    q = np.clip(np.rint(np.divide(blocks + offset, step, out=np.zeros_like(blocks), where=step > 0)),
                0, 15).astype(np.uint8)
    scales = np.zeros((blocks.shape[0], 12), dtype=np.uint8)
    scales[:, 0:4] = (sc[:, 0:4] & 0x3F) | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = (m[:, 0:4] & 0x3F) | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((m[:, 4:8] & 0x0F) << 4)
    # 32 bytes per pair of sub-blocks: the even one in the low nibbles, the odd one in the high.
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)
    out = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2),
                          dmin.astype(np.float16).view(np.uint8).reshape(-1, 2), scales, qs], axis=1)
    return out.reshape(x.shape[0], -1)


def quantize_q6_k(x):  # x: [rows, cols], cols % 256 == 0 -> uint8 [rows, cols / 256 * 210]
    blocks = x.reshape(-1, 16, 16).astype(np.float32)  # [n_blocks, group, element]
    group_scale = np.abs(blocks).max(axis=-1) / 31.0
    d = f16_round(group_scale.max(axis=-1) / 127.0)
    sc = np.clip(np.rint(np.divide(group_scale, d[:, None], out=np.zeros_like(group_scale),
                                   where=d[:, None] > 0)), -128, 127).astype(np.int8)
    step = (d[:, None] * sc)[..., None]
    q = np.clip(np.rint(np.divide(blocks, step, out=np.zeros_like(blocks), where=step != 0)), -32, 31)
    q = (q.astype(np.int16) + 32).astype(np.uint8).reshape(-1, 2, 4, 32)  # [block, half, quarter, l]
    low, high = q & 0x0F, q >> 4
    # Per half of 128: ql byte l holds quarters 0 (low nibble) and 2 (high nibble), byte 32 + l
    # quarters 1 and 3; qh byte l holds the two high bits of quarter k at bits 2k..2k+1.
    ql = np.concatenate([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)],
                        axis=-1).reshape(-1, 128)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6))
    out = np.concatenate([ql, qh.reshape(-1, 64), sc.view(np.uint8),
                          d.astype(np.float16).view(np.uint8).reshape(-1, 2)], axis=1)
    return out.reshape(x.shape[0], -1)


def encode_tensor(x, qtype):
    """`x` [rows, cols] (or [cols]) float32 -> array the GGUF writer takes, and its raw_dtype."""
    if qtype == Q.F32:
        return x.astype(np.float32), None
    if qtype == Q.F16:
        return x.astype(np.float16), None
    if qtype == Q.Q4_K:
        data = quantize_q4_k(x)
    elif qtype == Q.Q6_K:
        data = quantize_q6_k(x)
    else:
        data = gguf.quants.quantize(x.astype(np.float32), qtype)
    decoded = gguf.quants.dequantize(data, qtype).reshape(x.shape)
    rel = np.sqrt(np.mean((decoded - x) ** 2) / np.mean(x ** 2))
    limit = {Q.Q4_0: 0.15, Q.Q4_1: 0.12, Q.Q4_K: 0.12, Q.Q5_0: 0.08, Q.Q5_1: 0.06}.get(qtype, 0.03)
    if rel > limit:
        sys.exit(f"{qtype.name} round trip error {rel:.3f} too large: packer bug")
    return data, qtype


# ---------------------------------------------------------------------------------------------
# Weights and the GGUF file.


def make_weights(v, vocab_size):
    """Float32 weights by GGUF tensor name, [out_features, in_features] for matrices."""
    rng = np.random.default_rng(v.seed)
    h, i = v.hidden_size, v.intermediate_size
    kv = v.num_kv_heads * v.head_dim

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(low=0.8, high=1.2):
        return rng.uniform(low, high, h).astype(np.float32)

    w = {"token_embd.weight": (rng.standard_normal((vocab_size, h)) * EMBEDDING_STD).astype(np.float32)}
    shapes = {"attn_q": (h, h), "attn_k": (kv, h), "attn_v": (kv, h), "attn_output": (h, h),
              "ffn_gate": (i, h), "ffn_up": (i, h), "ffn_down": (h, i)}
    for layer in range(NUM_LAYERS):
        w[f"blk.{layer}.attn_norm.weight"] = norm()
        for m in MATRICES:
            w[f"blk.{layer}.{m}.weight"] = matrix(*shapes[m])
        w[f"blk.{layer}.ffn_norm.weight"] = norm()
    w["output_norm.weight"] = norm(*OUTPUT_NORM_RANGE)
    if not v.tied:
        w["output.weight"] = (rng.standard_normal((vocab_size, h)) * EMBEDDING_STD).astype(np.float32)
    return w


def tensor_type(v, name):
    if name.endswith("norm.weight"):
        return Q.F32
    if name == "token_embd.weight":
        return v.embd_type
    if name == "output.weight":
        return v.output_type
    layer, matrix = name.split(".")[1:3]
    return v.layer_types[int(layer)][matrix]


def write_gguf(path, v, weights, tokens, token_types, merges):
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type("model")
    writer.add_name(f"Tiny Llama {v.name}")
    writer.add_block_count(NUM_LAYERS)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(v.hidden_size)
    writer.add_feed_forward_length(v.intermediate_size)
    writer.add_head_count(v.num_heads)
    writer.add_head_count_kv(v.num_kv_heads)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_file_type(v.file_type)
    writer.add_vocab_size(len(tokens))
    writer.add_rope_dimension_count(v.head_dim)
    writer.add_add_space_prefix(False)
    writer.add_add_bos_token(False)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if v.name == "q4_k":
        # Author-recommended sampling defaults, as llama.cpp's converter writes them from
        # generation_config.json: exercises generation_config="auto" (inference ignores them).
        writer.add_float32("general.sampling.temp", 0.6)
        writer.add_float32("general.sampling.top_p", 0.9)
        writer.add_int32("general.sampling.top_k", 40)
    types = {}
    for name, x in weights.items():
        data, raw_dtype = encode_tensor(x, tensor_type(v, name))
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
        types[name] = tensor_type(v, name).name
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types


# ---------------------------------------------------------------------------------------------
# Independent float64 forward on the weights as stored (interleaved RoPE), as our C++ does it.


def stored_weights(path):
    reader = gguf.GGUFReader(path)
    out = {}
    for t in reader.tensors:
        rows = [int(n) for n in reversed(t.shape)]  # GGUF ne is innermost first
        out[t.name] = gguf.quants.dequantize(t.data, t.tensor_type).reshape(rows).astype(np.float64)
    return out


def numpy_logits(w, v, ids):  # -> [num_tokens, vocab_size]
    def rms_norm(x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(RMS_EPS)) * weight

    def rope_interleaved(x):  # x: [num_tokens, num_heads, head_dim]; rotates pairs (2j, 2j+1)
        d = x.shape[-1]
        inv_freq = ROPE_THETA ** (-np.arange(0, d, 2) / d)
        angle = np.arange(x.shape[0])[:, None, None] * inv_freq[None, None, :]
        cos, sin = np.cos(angle), np.sin(angle)
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    n, hd = len(ids), v.head_dim
    x = w["token_embd.weight"][ids]
    causal = np.triu(np.full((n, n), -np.inf), k=1)
    for layer in range(NUM_LAYERS):
        p = f"blk.{layer}."
        h = rms_norm(x, w[p + "attn_norm.weight"])
        q = rope_interleaved((h @ w[p + "attn_q.weight"].T).reshape(n, v.num_heads, hd))
        k = rope_interleaved((h @ w[p + "attn_k.weight"].T).reshape(n, v.num_kv_heads, hd))
        val = (h @ w[p + "attn_v.weight"].T).reshape(n, v.num_kv_heads, hd)
        group = v.num_heads // v.num_kv_heads
        attn = np.empty((n, v.num_heads, hd))
        for head in range(v.num_heads):
            scores = q[:, head] @ k[:, head // group].T / np.sqrt(hd) + causal
            probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs /= probs.sum(axis=-1, keepdims=True)
            attn[:, head] = probs @ val[:, head // group]
        x = x + attn.reshape(n, -1) @ w[p + "attn_output.weight"].T
        h = rms_norm(x, w[p + "ffn_norm.weight"])
        gate = h @ w[p + "ffn_gate.weight"].T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    x = rms_norm(x, w["output_norm.weight"])
    return x @ w.get("output.weight", w["token_embd.weight"]).T


# ---------------------------------------------------------------------------------------------
# Reference outputs from transformers.


def f32(x):
    """float32 value as the shortest decimal that reads back to the same float32."""
    return float(str(np.float32(x)))


def f32_list(t):
    return [f32(x) for x in t.reshape(-1).tolist()] if t.dim() <= 1 else [f32_list(r) for r in t]


def top_k_entries(logprobs):  # logprobs: [vocab_size]
    values, indices = torch.topk(logprobs, TOP_K)
    return [[int(i), f32(x)] for i, x in zip(indices.tolist(), values.tolist())]


@torch.no_grad()
def forward_with_states(model, ids):
    """Logits and the residual stream: embeddings, the output of every decoder layer (before the
    final norm for the last one), and the final norm output. Checked against output_hidden_states."""
    layer_outputs = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: layer_outputs.append(
        out[0] if isinstance(out, tuple) else out)) for layer in model.model.layers]
    try:
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    hs = out.hidden_states
    final_norm = model.model.norm(layer_outputs[-1])
    # HF: hidden_states has num_layers + 1 entries; [0] is the embedding output, [i] the output of
    # layer i-1 for i < num_layers, and the last one is replaced by the final norm output.
    assert len(hs) == NUM_LAYERS + 1
    for i in range(1, NUM_LAYERS):
        assert torch.equal(hs[i], layer_outputs[i - 1])
    assert torch.equal(hs[NUM_LAYERS], final_norm)
    return out.logits[0], hs[0][0], [t[0] for t in layer_outputs], final_norm[0]


@torch.no_grad()
def greedy(model, ids):
    cache = DynamicCache(config=model.config)
    out = model(input_ids=torch.tensor([ids]), use_cache=True, **{CACHE_ARG: cache})
    logprobs = torch.log_softmax(out.logits[0, -1], dim=-1)
    tokens, tops, margins = [], [], []
    for step in range(NUM_NEW_TOKENS):
        top2 = torch.topk(logprobs, 2).values
        margins.append(float(top2[0] - top2[1]))
        token = int(torch.argmax(logprobs))
        tokens.append(token)
        tops.append(top_k_entries(logprobs))
        if step + 1 < NUM_NEW_TOKENS:
            out = model(input_ids=torch.tensor([[token]]), use_cache=True, **{CACHE_ARG: cache})
            logprobs = torch.log_softmax(out.logits[0, -1], dim=-1)
    return tokens, tops, margins


def prompt_case(model, ids):
    logits, embeddings, layers, final_norm = forward_with_states(model, ids)
    full = len(ids) == FULL_HIDDEN_STATES_LENGTH

    def pick(t):  # t: [num_tokens, hidden_size]
        return f32_list(t if full else t[-1])

    logprobs = torch.log_softmax(logits, dim=-1)
    tokens, tops, margins = greedy(model, ids)
    return {
        "token_ids": ids,
        "hidden_states_positions": "all" if full else "last",
        "embeddings": pick(embeddings),
        "layer_outputs": [pick(t) for t in layers],
        "final_norm": pick(final_norm),
        "last_logits": f32_list(logits[-1]),
        "top5": [top_k_entries(row) for row in logprobs],
        "greedy_token_ids": tokens,
        "greedy_top5": tops,
        "greedy_min_margin": f32(min(margins)),
        "greedy_near_tie_steps": [i for i, m in enumerate(margins) if m < NEAR_TIE_MARGIN],
    }, logits


# Generic PretrainedConfig fields that say nothing about the model (and _name_or_path is a local path).
CONFIG_NOISE = {"_name_or_path", "_model_name_or_path", "quantization_config", "architectures",
                "id2label", "label2id", "return_dict", "output_attentions", "output_hidden_states",
                "chunk_size_feed_forward", "problem_type", "is_encoder_decoder", "torchscript"}


def json_config(config):
    d = config.to_dict()
    return {k: d[k] for k in sorted(d) if k not in CONFIG_NOISE}


def versions():
    out = {n: metadata.version(n) for n in ["torch", "transformers", "tokenizers", "gguf", "numpy"]}
    out["python"] = platform.python_version()
    return out


def check_tokenizer(out_dir, file_name, tokens):
    tokenizer = AutoTokenizer.from_pretrained(out_dir, gguf_file=file_name)
    ids = tokenizer(MERGE_TRAINING_TEXT, add_special_tokens=True)["input_ids"]
    assert max(ids) >= len(tokens) - NUM_MERGES, "merges unused: tokenizer not built from the file"
    assert tokenizer.decode(ids) == MERGE_TRAINING_TEXT
    special = tokenizer("<|im_start|>hi<|im_end|>", add_special_tokens=True)["input_ids"]
    assert special[0] == 1 and special[-1] == 2, special


def generate(v, out_dir, tokens, token_types, merges, prompts):
    file_name = f"tiny_llama_{v.name}.gguf"
    path = os.path.join(out_dir, file_name)
    weights = make_weights(v, len(tokens))
    types = write_gguf(path, v, weights, tokens, token_types, merges)
    check_tokenizer(out_dir, file_name, tokens)

    model = AutoModelForCausalLM.from_pretrained(
        out_dir, gguf_file=file_name, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    assert model.config.tie_word_embeddings == v.tied

    stored = stored_weights(path)
    cases, worst = [], 0.0
    for ids in prompts:
        case, logits = prompt_case(model, ids)
        worst = max(worst, float(np.abs(numpy_logits(stored, v, ids) - logits.double().numpy()).max()))
        cases.append(case)
    if worst > 1e-3:
        sys.exit(f"{v.name}: transformers and the interleaved-RoPE numpy forward differ by {worst}")

    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "generator": "scripts/gen_tiny_llama.py",
        "versions": versions(),
        "gguf_file": file_name,
        "gguf_sha256": digest,
        "dtype": "float32",
        "attn_implementation": "eager",
        "tensor_types": types,
        "config": json_config(model.config),
        "numpy_interleaved_rope_max_abs_logit_diff": f32(worst),
        "top_k": TOP_K,
        "num_new_tokens": NUM_NEW_TOKENS,
        "near_tie_margin": NEAR_TIE_MARGIN,
        "prompts": cases,
    }
    json_path = os.path.join(out_dir, f"tiny_llama_{v.name}.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    ties = {len(c["token_ids"]): c["greedy_near_tie_steps"] for c in cases}
    margins = {len(c["token_ids"]): round(c["greedy_min_margin"], 4) for c in cases}
    print(f"{v.name}: gguf {os.path.getsize(path)} B, json {os.path.getsize(json_path)} B, "
          f"numpy diff {worst:.2e}, min margins {margins}, near ties {ties}", file=sys.stderr)


def main():
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "data")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=default_out)
    parser.add_argument("--only", help="generate one variant (by name)")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # one fixed reduction order, so reruns give the same bytes
    torch.use_deterministic_algorithms(True)

    tokens, token_types, merges = build_vocab()
    rng = np.random.default_rng(PROMPT_SEED)
    prompts = [rng.integers(len(SPECIAL_TOKENS), len(tokens), n).tolist() for n in PROMPT_LENGTHS]
    for v in VARIANTS:
        if args.only in (None, v.name):
            generate(v, args.out_dir, tokens, token_types, merges, prompts)


if __name__ == "__main__":
    main()
