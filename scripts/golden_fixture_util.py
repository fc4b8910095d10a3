"""What the real-model fixture generators share (gen_golden_smollm2.py, gen_golden_qwen25_05b.py,
gen_golden_gemma3_270m.py, gen_beam_search_fixtures.py): loading a GGUF into transformers in float32,
a deterministic torch, the greedy run with per-position top-k logprobs, float32-exact numbers,
versions, hashes and the JSON writer. Reruns with the same versions give the same bytes.
"""

import hashlib
import inspect
import json
import os
import platform
import sys
from importlib import metadata

import numpy as np
import torch
from transformers import AutoModelForCausalLM, DynamicCache


def float32_value(x):
    """The float32 value `x` as the shortest decimal that reads back to the same float32."""
    return float(str(np.float32(x)))


def top_k_entries(logprobs, k):  # logprobs: [vocab_size]
    values, indices = torch.topk(logprobs, k)
    return [[int(i), float32_value(v)] for i, v in zip(indices.tolist(), values.tolist())]


def versions(names):
    out = {name: metadata.version(name) for name in names}
    out["python"] = platform.python_version()
    return out


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def deterministic_torch():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # one fixed reduction order, so reruns give the same bytes
    torch.use_deterministic_algorithms(True)


def load_gguf_model(path):
    """transformers' float32 model of a GGUF file (every tensor dequantized), eager attention."""
    model_dir, model_file = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, gguf_file=model_file, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


@torch.no_grad()
def greedy(model, ids, num_new_tokens, top_k, near_tie_margin, decode=None):
    """The prompt's top-k logprobs at every position, then a greedy continuation (argmax, no EOS
    stop) through the KV cache with the top-k and the top-1/top-2 margin of each step. With
    `decode`, the continuation's text comes after its top-k (the fixtures' key order)."""
    # transformers 5.x renamed the forward argument `past_key_values` to `cache`; accept either.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    cache = DynamicCache(config=model.config)  # filled in place by every forward below
    out = model(input_ids=torch.tensor([ids]), use_cache=True, **{cache_arg: cache})
    prompt_logprobs = torch.log_softmax(out.logits[0].float(), dim=-1)  # [num_tokens, vocab_size]
    prompt_top = [top_k_entries(row, top_k) for row in prompt_logprobs]
    logprobs = prompt_logprobs[-1]
    output_ids, output_logprobs, output_top, margins = [], [], [], []
    for step in range(num_new_tokens):
        top2 = torch.topk(logprobs, 2).values
        margins.append(float(top2[0] - top2[1]))
        token = int(torch.argmax(logprobs))
        output_ids.append(token)
        output_logprobs.append(float32_value(logprobs[token]))
        output_top.append(top_k_entries(logprobs, top_k))
        if step + 1 == num_new_tokens:
            break
        out = model(input_ids=torch.tensor([[token]]), use_cache=True, **{cache_arg: cache})
        logprobs = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    case = {
        "prompt_token_ids": ids,
        "prompt_top5": prompt_top,
        "output_token_ids": output_ids,
        "output_logprobs": output_logprobs,
        "output_top5": output_top,
    }
    if decode is not None:
        case["output_text"] = decode(output_ids)
    case["output_min_margin"] = float32_value(min(margins))
    case["output_near_tie_steps"] = [i for i, m in enumerate(margins) if m < near_tie_margin]
    return case


def print_case(case):
    print(f"{case['name']}: {len(case['prompt_token_ids'])} prompt tokens, min margin "
          f"{case['output_min_margin']:.4f}, near ties at {case['output_near_tie_steps']}, "
          f"text {case['output_text']!r}", file=sys.stderr)


def write_json(path, value, ensure_ascii=False):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=ensure_ascii, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)", file=sys.stderr)
