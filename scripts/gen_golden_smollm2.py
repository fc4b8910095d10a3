#!/usr/bin/env python3
"""Golden greedy-decoding fixture for SmolLM2-135M-Instruct (Q4_1 GGUF), made with transformers.

transformers dequantizes every GGUF tensor to float32 (with gguf-py) and un-permutes the llama Q/K
rows, so the numbers here are what an exact float32 implementation of the model stored in the file
gives. For each prompt we record its token ids, the top-k next-token distribution at every prompt
position (checks prefill), and a manual greedy loop (argmax, no EOS stop) with the top-k
distribution at every step. Written to tests/golden/data/smollm2_q4_1_greedy.json; the schema is in
tests/golden/data/README.md.

Usage: python3 scripts/gen_golden_smollm2.py [--model PATH] [--out PATH]
Needs: torch, transformers, tokenizers, gguf, numpy, accelerate (transformers' GGUF loader asks for it).
"""

import argparse
import os
import sys

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_fixture_util as fx  # noqa: E402

NUM_NEW_TOKENS = 32
TOP_K = 5
# A greedy step whose top-1/top-2 logit gap is below this is reported as a near tie: a correct
# implementation with different float rounding could pick the other token there.
NEAR_TIE_MARGIN = 0.01

PARAGRAPH = (
    "Bread is one of the oldest prepared foods. Evidence from around thirty thousand years ago in "
    "Europe shows that people extracted starch from the roots of plants such as cattails and ferns, "
    "spread it on flat rocks, and cooked it over a fire. Around ten thousand years ago, with the dawn "
    "of agriculture, grains became the mainstay of making bread. Yeast spores are everywhere, "
    "including on the surface of cereal grains, so any dough left to rest will become naturally "
    "leavened. Early bakers learned to keep a portion of one day's dough to start the next batch, a "
    "practice that survives today in sourdough. Over the centuries, bakers refined their methods, "
    "and the"
)

CHAT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n"
    "<|im_start|>assistant\n"
)

# (name, text). Covers plain prose, a question, code, digits, non-ASCII text, the chat format (as
# SmolLM2's template renders one user turn), a long prompt, a one-token prompt, and whitespace runs
# (including spaces before digits, where the "smollm" digit split matters).
PROMPTS = [
    ("plain_english", "The quick brown fox jumps over the lazy dog. Once upon a time, in a small village by the sea,"),
    ("question", "What is the capital of France?"),
    ("code", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("numbers", "Compute step by step: 12 + 35 = 47, 128 * 4 = 512, 1000 - 1 = 999, 7 * 8 ="),
    ("unicode", "Traduction: «café crème» 東京は日本の首都です。 Emoji: 😀🚀 Ελληνικά, русский"),
    ("chat", CHAT),
    ("paragraph", PARAGRAPH),
    ("one_token", "Hello"),
    ("whitespace", "Notes:\n\n  * first item\n\t* second\titem   with   extra   spaces\n"),
    ("numbered_list", "Steps:\n\n    1. Preheat the oven.\n    2. Mix the flour and sugar.\n    3."),
]


def use_smollm_pre_tokenizer(tokenizer):
    """The GGUF says pre-tokenizer "smollm": split every digit off first, then the GPT-2 byte-level
    regex (llama.cpp's SMOLLM pre type, and SmolLM2's own tokenizer.json). transformers' GGUF loader
    does not know "smollm" and builds the byte-level split alone, which differs on a space before a
    digit (e.g. "    1." ends up as 3 spaces + " 1" instead of 4 spaces + "1"). Put the digit split in."""
    backend = tokenizer.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), backend.pre_tokenizer]
    )


def encode(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer(text, add_special_tokens=False)["input_ids"] != ids:
        sys.exit("add_special_tokens=True added tokens; SmolLM2 should add no BOS")
    return ids


def run_case(model, tokenizer, name, text):
    ids = encode(tokenizer, text)
    return {"name": name, "prompt": text,
            **fx.greedy(model, ids, NUM_NEW_TOKENS, TOP_K, NEAR_TIE_MARGIN,
                        decode=lambda out: tokenizer.decode(out, skip_special_tokens=True))}


def main():
    default_model = os.path.expanduser("~/.cache/cvllm/SmolLM2-135M-Instruct.Q4_1.gguf")
    default_out = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "data",
        "smollm2_q4_1_greedy.json",
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--out", default=default_out)
    args = parser.parse_args()

    fx.deterministic_torch()
    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    hf_default_tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    use_smollm_pre_tokenizer(tokenizer)
    model = fx.load_gguf_model(args.model)

    cases = []
    for name, text in PROMPTS:
        case = run_case(model, tokenizer, name, text)
        default_ids = hf_default_tokenizer(text, add_special_tokens=True)["input_ids"]
        case["hf_gguf_tokenizer_differs"] = default_ids != case["prompt_token_ids"]
        fx.print_case(case)
        cases.append(case)

    fixture = {
        "generator": "scripts/gen_golden_smollm2.py",
        "model_file": model_file,
        "model_sha256": fx.sha256_of(args.model),
        "versions": fx.versions(["torch", "transformers", "tokenizers", "gguf", "numpy", "accelerate"]),
        "dtype": "float32",
        "attn_implementation": "eager",
        "kv_cache": True,
        "add_special_tokens": True,
        "pre_tokenizer": "smollm: Digits(individual_digits) then ByteLevel GPT-2 regex",
        "num_new_tokens": NUM_NEW_TOKENS,
        "top_k": TOP_K,
        "near_tie_margin": NEAR_TIE_MARGIN,
        "cases": cases,
    }
    fx.write_json(args.out, fixture)


if __name__ == "__main__":
    main()
