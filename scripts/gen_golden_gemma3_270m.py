#!/usr/bin/env python3
"""Golden fixture for Gemma 3 270M (Q4_K_M GGUF), made with transformers, for
tests/golden/test_model_gemma3_270m.cpp.

transformers dequantizes every GGUF tensor to float32 (with gguf-py) and subtracts the 1 llama.cpp's
converter added to Gemma's norm weights, so the numbers here are what an exact float32
implementation of the model stored in the file gives (eager attention). The GGUF carries no chat
template (this is the base model), nor which layers are global or the local RoPE base: transformers
takes Gemma3TextConfig's defaults (every 6th layer global, local base 10000, query_pre_attn_scalar
256 = head_dim), as llama.cpp does.

Contents (schema as tests/golden/data/smollm2_q4_1_greedy.json, see tests/golden/data/README.md):
  cases: per prompt its token ids (transformers' tokenizer from the same GGUF, BOS added), the
    top-5 next-token logprobs at every prompt position, and a 32-token greedy continuation (argmax,
    KV cache, no EOS stop) with the top-5 logprobs of each step. One prompt is longer than the
    512-token sliding window; one is a chat turn rendered with Gemma 3's chat template
    (tests/golden/data/chat/templates/google-gemma-3-it.jinja) by transformers' jinja2.
  tokenizer: the hard-string corpus of scripts/gen_tokenizer_fixtures.py (plus Gemma's control
    tokens in text) encoded with add_special_tokens on and off, and decode cases (the encodings and
    random id sequences, skip_special_tokens on and off), all by the same transformers tokenizer.

Usage: python3 scripts/gen_golden_gemma3_270m.py [--model PATH] [--out PATH]
Needs: torch, transformers, tokenizers, gguf, numpy, jinja2.
"""

import argparse
import os
import sys

from transformers import AutoTokenizer

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
sys.path.insert(0, SCRIPTS)
import gen_tokenizer_fixtures as tokfix  # noqa: E402  (the shared hard-string corpus)
import golden_fixture_util as fx  # noqa: E402

NUM_NEW_TOKENS = 32
TOP_K = 5
NEAR_TIE_MARGIN = 0.01
CHAT_TEMPLATE = os.path.join(ROOT, "tests/golden/data/chat/templates/google-gemma-3-it.jinja")

PARAGRAPH = (
    "Bread is one of the oldest prepared foods. Evidence from around thirty thousand years ago in "
    "Europe shows that people extracted starch from the roots of plants such as cattails and ferns, "
    "spread it on flat rocks, and cooked it over a fire. Around ten thousand years ago, with the dawn "
    "of agriculture, grains became the mainstay of making bread. Yeast spores are everywhere, "
    "including on the surface of cereal grains, so any dough left to rest will become naturally "
    "leavened. Over the centuries, bakers refined their methods, and the"
)
# ~620 tokens: past the 512-token window of the local layers, so they attend to a suffix only.
LONG = "".join(f"Line {i}: {i} squared is {i * i}, and {i} plus {i} is {2 * i}.\n" for i in range(1, 23))
CHAT_MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What is the tallest mountain in the world?"},
]

PROMPTS = [
    ("plain_english", "The quick brown fox jumps over the lazy dog. Once upon a time, in a small village by the sea,"),
    ("question", "What is the capital of France?"),
    ("code", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("numbers", "Compute step by step: 12 + 35 = 47, 128 * 4 = 512, 1000 - 1 = 999, 7 * 8 ="),
    ("unicode", "Traduction: «café crème» 東京は日本の首都です。 Emoji: 😀🚀 Ελληνικά, русский"),
    ("paragraph", PARAGRAPH),
    ("one_token", "Hello"),
    ("whitespace", "Notes:\n\n  * first item\n\t* second\titem   with   extra   spaces\n"),
    ("long_past_window", LONG),
]

GEMMA_SPECIALS_IN_TEXT = [
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text<eos>more<pad>",
    "not special: <start_of_turn > < end_of_turn>",
    "<start_of_image>unfinished <start_of_tu",
]


def tokenizer_cases(tokenizer, model_path):
    encode, encoded = [], []
    for text in tokfix.CORPUS + GEMMA_SPECIALS_IN_TEXT:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        ids_no_special = tokenizer(text, add_special_tokens=False)["input_ids"]
        encode.append({"text": text, "ids": ids, "ids_no_special": ids_no_special})
        encoded.append(ids_no_special)
    vocab = tokfix.read_vocab(model_path)
    return {"vocab_size": len(vocab["tokens"]), "encode": encode,
            "decode": tokfix.decode_cases(tokenizer, vocab, encoded)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/cvllm/gemma-3-270m-q4_k_m.gguf"))
    parser.add_argument("--out", default=os.path.join(ROOT, "tests/golden/data/gemma3_270m_q4_k_m_greedy.json"))
    args = parser.parse_args()

    fx.deterministic_torch()
    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    model = fx.load_gguf_model(args.model)
    cfg = model.config

    with open(CHAT_TEMPLATE) as f:
        chat_template = f.read()
    chat_text = tokenizer.apply_chat_template(CHAT_MESSAGES, chat_template=chat_template,
                                              tokenize=False, add_generation_prompt=True)
    prompts = [(name, text, tokenizer(text, add_special_tokens=True)["input_ids"])
               for name, text in PROMPTS]
    # The template writes <bos> itself, so its text is tokenized without adding another (as vLLM's
    # chat does).
    prompts.append(("chat", chat_text, tokenizer(chat_text, add_special_tokens=False)["input_ids"]))

    cases = []
    for name, text, ids in prompts:
        case = {"name": name, "prompt": text,
                **fx.greedy(model, ids, NUM_NEW_TOKENS, TOP_K, NEAR_TIE_MARGIN,
                            decode=lambda out: tokenizer.decode(out, skip_special_tokens=True))}
        fx.print_case(case)
        cases.append(case)

    fixture = {
        "generator": "scripts/gen_golden_gemma3_270m.py",
        "model_file": model_file,
        "model_sha256": fx.sha256_of(args.model),
        "versions": fx.versions(["torch", "transformers", "tokenizers", "gguf", "numpy", "jinja2"]),
        "dtype": "float32",
        "attn_implementation": "eager",
        "kv_cache": True,
        "reference_config": {
            "layer_types": cfg.layer_types, "sliding_window": cfg.sliding_window,
            "rope_parameters": cfg.rope_parameters,
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar, "vocab_size": cfg.vocab_size},
        "num_new_tokens": NUM_NEW_TOKENS,
        "top_k": TOP_K,
        "near_tie_margin": NEAR_TIE_MARGIN,
        "chat": {"template": "tests/golden/data/chat/templates/google-gemma-3-it.jinja",
                 "messages": CHAT_MESSAGES, "add_generation_prompt": True, "text": chat_text},
        "cases": cases,
        "tokenizer": tokenizer_cases(tokenizer, args.model),
    }
    fx.write_json(args.out, fixture)


if __name__ == "__main__":
    main()
