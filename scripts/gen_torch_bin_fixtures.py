#!/usr/bin/env python3
"""Fixtures for PyTorch `pytorch_model.bin` checkpoints and slow GPT-2-style tokenizer files
(vocab.json + merges.txt, no tokenizer.json), for tests/golden/test_torch_bin.cpp,
tests/unit/test_torch_checkpoint.cpp and tests/fuzz/fuzz_torch_checkpoint.cpp.

Writes
- tests/golden/data/torch_bin/opt_f32/: a tiny random OPT (opt-125m-like) as facebook/opt-125m
  ships it: config.json, generation_config.json, pytorch_model.bin written by
  torch.save(model.state_dict()) (an OrderedDict with its _metadata, lm_head.weight sharing the
  embedding's storage), and an OPT-style slow tokenizer: vocab.json, merges.txt,
  tokenizer_config.json (GPT2Tokenizer, add_bos_token, "</s>" as bos/eos/unk, "<pad>"),
  special_tokens_map.json. No safetensors, no tokenizer.json.
- tests/golden/data/torch_bin/opt_f16_sharded/: the same architecture in float16, sharded as
  transformers 4 wrote it with safe_serialization=False (plain dict per shard,
  pytorch_model-0000K-of-0000N.bin + pytorch_model.bin.index.json).
- tests/golden/data/torch_bin/<name>.json: reference logits / top-5 logprobs / greedy
  continuations from transformers (scripts/gen_hf_model_fixtures.py's reference()), plus the
  token ids transformers' GPT2Tokenizer gives for a few prompts (opt_f32).
- tests/golden/data/torch_bin/gpt2_tokenizer/: a GPT-2-style slow tokenizer ("<|endoftext|>" last,
  no BOS added) with added_tokens_decoder holding an extra special and an extra normal token;
  gpt2_plain_tokenizer/: the same vocabulary with openai-community/gpt2's bare tokenizer_config.json
  (special tokens from GPT2Tokenizer's defaults).
- tests/golden/data/torch_bin/<tokenizer>_cases.json: transformers' token ids over the corpus of
  hard strings (with and without special tokens) and decoded texts, for both tokenizers.
- tests/unit/data/torch_checkpoint/: tiny torch.save files, valid and not, with valid.json
  describing the valid one's tensors (names, dtypes, shapes, values as float).
- tests/fuzz/corpus/torch_checkpoint/: seeds (first byte 0: a checkpoint file, 1: an index JSON,
  2: slow tokenizer files separated by NUL bytes).

transformers 5 writes only safetensors and has no separate "slow" tokenizer class: its
GPT2Tokenizer builds the byte-level BPE pipeline from vocab.json/merges.txt itself, which is what
AutoTokenizer loads here. The .bin files are written with torch.save exactly as transformers 4 did.

Usage: python3 scripts/gen_torch_bin_fixtures.py
Deterministic: fixed seeds, no timestamps (torch.save's serialization_id is random, so the .bin
bytes differ between runs; their contents do not).
"""
import collections
import json
import os
import pickle
import platform
import random
import shutil
import sys
import tempfile
import zipfile

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, OPTConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_hf_model_fixtures as hfm  # noqa: E402
import gen_hf_tokenizer_fixtures as hft  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "golden", "data", "torch_bin")
UNIT = os.path.join(ROOT, "tests", "unit", "data", "torch_checkpoint")
FUZZ = os.path.join(ROOT, "tests", "fuzz", "corpus", "torch_checkpoint")
VOCAB_SIZE = 300         # the tiny OPT's vocabulary
GPT2_VOCAB_SIZE = 1000   # no model behind it: more merges to exercise


# --- tokenizers --------------------------------------------------------------------------------

def train_bpe(specials, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(hft.training_corpus(), trainer)
    return tok


def save_slow_files(tok, d):
    """vocab.json + merges.txt as GPT2Tokenizer ships them (merges with a version header)."""
    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    merges = state["model"]["merges"]
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for m in merges:
            f.write((m if isinstance(m, str) else " ".join(m)) + "\n")


def added_token(content, special=True, normalized=True):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": normalized,
            "rstrip": False, "single_word": False}


def make_opt_tokenizer(d):
    """OPT's files: <s> <pad> </s> <unk> at ids 0..3, "</s>" as bos/eos/unk, a BOS added."""
    tok = train_bpe(["<s>", "<pad>", "</s>", "<unk>"], VOCAB_SIZE)
    save_slow_files(tok, d)
    special = {"bos_token": added_token("</s>"), "eos_token": added_token("</s>"),
               "unk_token": added_token("</s>"), "pad_token": added_token("<pad>")}
    config = {"errors": "replace", **special, "add_prefix_space": False, "add_bos_token": True,
              "model_max_length": 1000000000000000019884624838656,
              "tokenizer_class": "GPT2Tokenizer"}
    write_json(os.path.join(d, "tokenizer_config.json"), config)
    write_json(os.path.join(d, "special_tokens_map.json"), special)


def make_gpt2_tokenizer(d, plain=False):
    """GPT-2's files: "<|endoftext|>" as the last vocab.json entry, bos = eos = unk, no BOS added.
    Not plain: added_tokens_decoder adds a special token and a normal one after the vocabulary.
    Plain: as openai-community/gpt2 ships them, a tokenizer_config.json with model_max_length only
    (GPT2Tokenizer's defaults name the special tokens) and config.json saying model_type gpt2."""
    tok = train_bpe([], GPT2_VOCAB_SIZE - 1)
    save_slow_files(tok, d)
    with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    n = len(vocab)
    vocab["<|endoftext|>"] = n
    write_json(os.path.join(d, "vocab.json"), vocab)
    if plain:
        write_json(os.path.join(d, "tokenizer_config.json"), {"model_max_length": 1024})
        write_json(os.path.join(d, "config.json"), {"model_type": "gpt2", "vocab_size": n + 1,
                                                    "bos_token_id": n, "eos_token_id": n})
        return
    decoder = {
        str(n): {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                 "single_word": False, "special": True},
        str(n + 1): {"content": "<|tool|>", "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": True},
        str(n + 2): {"content": " hello world", "lstrip": False, "normalized": True,
                     "rstrip": False, "single_word": False, "special": False},
    }
    config = {"add_prefix_space": False, "added_tokens_decoder": decoder,
              "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "model_max_length": 1024,
              "tokenizer_class": "GPT2Tokenizer"}
    write_json(os.path.join(d, "tokenizer_config.json"), config)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def tokenizer_cases(d, name):
    tok = AutoTokenizer.from_pretrained(d)
    backend = tok.backend_tokenizer
    corpus = hft.corpus_for(backend)
    encode = [{"text": t, "with_special": tok(t, add_special_tokens=True)["input_ids"],
               "without_special": tok(t, add_special_tokens=False)["input_ids"]} for t in corpus]
    rng = random.Random(1234)
    decode = []
    for ids in hft.decode_id_lists(backend, [e["without_special"] for e in encode], rng):
        decode.append({"ids": ids, "skip_special": tok.decode(ids, skip_special_tokens=True),
                       "keep_special": tok.decode(ids, skip_special_tokens=False)})
    cases = {"generator": "scripts/gen_torch_bin_fixtures.py", "tokenizer_class": type(tok).__name__,
             "transformers": transformers.__version__,
             "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
             "pad_token_id": tok.pad_token_id, "vocab_size": len(tok),
             "encode": encode, "decode": decode}
    with open(os.path.join(GOLDEN, name + "_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    print(f"{name}: {type(tok).__name__}, {len(encode)} encode / {len(decode)} decode cases")
    return tok


# --- models -------------------------------------------------------------------------------------

def make_model(dtype, seed_name):
    torch.manual_seed(0)
    config = OPTConfig(**hfm.opt_base())
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    hfm.randomize(model, seed=sum(map(ord, seed_name)))
    return model.to(dtype), config


def save_bin(model, path, num_shards):
    """torch.save as transformers 4 did with safe_serialization=False."""
    model.save_pretrained(path)  # config.json, generation_config.json (+ safetensors, dropped)
    for f in os.listdir(path):
        if f.endswith(".safetensors") or f.endswith(".safetensors.index.json"):
            os.remove(os.path.join(path, f))
    state = model.state_dict()
    if num_shards == 1:
        torch.save(state, os.path.join(path, "pytorch_model.bin"))
        return
    names = list(state.keys())
    per = (len(names) + num_shards - 1) // num_shards
    weight_map, total = {}, 0
    for k in range(num_shards):
        shard_name = f"pytorch_model-{k + 1:05d}-of-{num_shards:05d}.bin"
        shard = {n: state[n] for n in names[k * per:(k + 1) * per]}
        if "lm_head.weight" in shard and model.config.tie_word_embeddings:
            del shard["lm_head.weight"]  # transformers 4 dropped tied keys from shards
        torch.save(shard, os.path.join(path, shard_name))
        for n, t in shard.items():
            weight_map[n] = shard_name
            total += t.numel() * t.element_size()
    write_json(os.path.join(path, "pytorch_model.bin.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})


def make_checkpoint(name, dtype, num_shards, tokenizer):
    path = os.path.join(GOLDEN, name)
    shutil.rmtree(path, ignore_errors=True)
    model, config = make_model(dtype, name)
    save_bin(model, path, num_shards)
    extra = {}
    if tokenizer:
        make_opt_tokenizer(path)
        tok = tokenizer_cases(path, name)
        prompts = ["Hello, world!", "The quick brown fox", " jumps over the lazy dog."]
        extra["tokenizer"] = {"class": type(tok).__name__, "encodings": [
            {"text": p, "token_ids": tok(p)["input_ids"]} for p in prompts]}
    ref = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                               attn_implementation="eager")
    ref.eval()
    rng = np.random.default_rng(1234)
    prompts = [[int(x) for x in rng.integers(3, config.vocab_size, n)] for n in hfm.PROMPT_LENGTHS]
    fixture = {
        "generator": "scripts/gen_torch_bin_fixtures.py", "checkpoint": f"torch_bin/{name}",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "weights_dtype": str(dtype).replace("torch.", ""), "reference_dtype": "float32",
        "attn_implementation": "eager", "num_new_tokens": hfm.NUM_NEW_TOKENS, "top_k": hfm.TOP_K,
        **extra, "prompts": hfm.reference(ref, prompts)}
    if tokenizer:  # a text prompt through the same model: what `cvllm generate` should print
        ids = extra["tokenizer"]["encodings"][0]["token_ids"]
        fixture["text_prompt"] = {"text": extra["tokenizer"]["encodings"][0]["text"],
                                  **hfm.reference(ref, [ids])[0]}
        tok = AutoTokenizer.from_pretrained(path)
        fixture["text_prompt"]["greedy_text"] = tok.decode(
            fixture["text_prompt"]["greedy_token_ids"], skip_special_tokens=True)
    for f in os.listdir(path):
        os.chmod(os.path.join(path, f), 0o644)
    with open(os.path.join(GOLDEN, name + ".json"), "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(path, p)) for p in os.listdir(path))
    print(f"{name}: {size / 1024:.0f} KB, min greedy margin "
          f"{min(p['greedy_min_margin'] for p in fixture['prompts']):.3f}")


# --- unit-test and fuzz files -------------------------------------------------------------------

def rezip(src, dst, transform):
    """Copies a torch zip entry by entry; transform(name, data) -> (name, data, compress_type)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            name, data, compress = transform(info.filename, zin.read(info.filename))
            if name is not None:
                zout.writestr(zipfile.ZipInfo(name), data, compress_type=compress)


def valid_state():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(4, 6, generator=g)
    state = collections.OrderedDict()
    state["linear.weight"] = base
    state["linear.bias"] = torch.randn(6, generator=g)
    state["tied.weight"] = base                   # the same tensor: memoized in the pickle
    state["row_view"] = base[1:3]                 # a view at storage offset 6 into base's storage
    state["half"] = torch.randn(3, 2, generator=g).half()
    state["bf16"] = torch.randn(5, generator=g).bfloat16()
    state["scalar"] = torch.tensor(2.5)
    state["empty"] = torch.zeros(0, 3)
    state["position_ids"] = torch.arange(4)       # int64 buffer: listed, not loadable
    return state


def describe(state):
    out = {}
    for name, t in state.items():
        entry = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape)}
        if t.is_floating_point():
            entry["values"] = [float(x) for x in t.float().flatten().tolist()]
        out[name] = entry
    return out


def make_unit_files():
    shutil.rmtree(UNIT, ignore_errors=True)
    os.makedirs(UNIT)
    state = valid_state()
    valid = os.path.join(UNIT, "valid.bin")
    torch.save(state, valid)
    write_json(os.path.join(UNIT, "valid.json"), describe(state))
    # The same with pickle protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE opcodes).
    torch.save(state, os.path.join(UNIT, "valid_proto4.bin"), pickle_protocol=4)
    torch.save({"a": torch.ones(2)}, os.path.join(UNIT, "legacy.bin"),
               _use_new_zipfile_serialization=False)
    torch.save({"t": torch.randn(3, 4).t()}, os.path.join(UNIT, "transposed.bin"))
    torch.save({"c": torch.ones(2, dtype=torch.complex64)}, os.path.join(UNIT, "complex.bin"))
    rezip(valid, os.path.join(UNIT, "compressed.bin"),
          lambda n, d: (n, d, zipfile.ZIP_DEFLATED if n.endswith("data/0") else zipfile.ZIP_STORED))
    # A pickle naming os.system: it must be refused by name, never called.
    rezip(valid, os.path.join(UNIT, "forbidden_global.bin"),
          lambda n, d: (n, pickle.dumps({"x": os.system}, protocol=2) if n.endswith("data.pkl")
                        else d, zipfile.ZIP_STORED))
    # Storage "0" is referenced but its entry is gone.
    rezip(valid, os.path.join(UNIT, "missing_storage.bin"),
          lambda n, d: (None if n.endswith("/data/0") else n, d, zipfile.ZIP_STORED))
    # A storage entry one element short of what the pickle declares.
    rezip(valid, os.path.join(UNIT, "short_storage.bin"),
          lambda n, d: (n, d[:-4] if n.endswith("/data/0") else d, zipfile.ZIP_STORED))
    rezip(valid, os.path.join(UNIT, "big_endian.bin"),
          lambda n, d: (n, b"big" if n.endswith("/byteorder") else d, zipfile.ZIP_STORED))
    # A tensor wrapped in a non-dict top level (a training checkpoint).
    torch.save({"model": {"w": torch.ones(2)}, "step": 3}, os.path.join(UNIT, "nested.bin"))
    for f in os.listdir(UNIT):
        print(f"unit {f}: {os.path.getsize(os.path.join(UNIT, f))} bytes")


def make_fuzz_seeds():
    shutil.rmtree(FUZZ, ignore_errors=True)
    os.makedirs(FUZZ)
    for f in ["valid.bin", "forbidden_global.bin", "transposed.bin", "short_storage.bin",
              "compressed.bin"]:
        with open(os.path.join(UNIT, f), "rb") as src, open(os.path.join(FUZZ, f), "wb") as dst:
            dst.write(b"\0" + src.read())
    with open(os.path.join(FUZZ, "index.json"), "wb") as f:
        f.write(b"\1" + json.dumps({"metadata": {"total_size": 8},
                                    "weight_map": {"x": "pytorch_model-00001-of-00001.bin"}}).encode())
    for name in ["opt_f32", "gpt2_tokenizer", "gpt2_plain_tokenizer"]:  # slow tokenizer files, NUL-separated
        parts = []
        for f in ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]:
            p = os.path.join(GOLDEN, name, f)
            parts.append(open(p, "rb").read() if os.path.exists(p) else b"")
        with open(os.path.join(FUZZ, f"slow_{name}.txt"), "wb") as f:
            f.write(b"\2" + b"\0".join(parts))
    print(f"fuzz seeds: {len(os.listdir(FUZZ))}")


def main():
    torch.set_num_threads(1)
    os.makedirs(GOLDEN, exist_ok=True)
    make_checkpoint("opt_f32", torch.float32, 1, tokenizer=True)
    make_checkpoint("opt_f16_sharded", torch.float16, 3, tokenizer=False)
    for name, plain in [("gpt2_tokenizer", False), ("gpt2_plain_tokenizer", True)]:
        d = os.path.join(GOLDEN, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        make_gpt2_tokenizer(d, plain)
        tokenizer_cases(d, name)
    make_unit_files()
    make_fuzz_seeds()


if __name__ == "__main__":
    main()
