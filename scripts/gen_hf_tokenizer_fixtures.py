#!/usr/bin/env python3
"""Makes tests/golden/data/hf_tokenizers/<name>/: a Hugging Face tokenizer.json (+ tokenizer_config.json)
and cases.json, the expected outputs of Python `tokenizers` over a corpus of hard strings.

Two kinds of tokenizer, because there is no hub here:
- converted: transformers turns a GGUF vocabulary into a fast tokenizer (AutoTokenizer with gguf_file,
  then save_pretrained). Sources: the default model (SmolLM2) and the vocab-only GGUFs of
  ../shared/testdata/tokenizer/. The converter drops a few pipeline details the GGUF does not record;
  we put back those of the real checkpoints (SmolLM2's Digits pre-tokenizer, Phi-3's rstrip flags), so
  each file is what the model's own tokenizer.json says. The test also checks that the GGUF loader
  gives the same ids as the tokenizer.json loader for these.
- trained: real pipelines of families whose vocabularies are too big to commit (Qwen2, Llama 3,
  Gemma, RoBERTa/OPT-style ByteLevel with a prefix space, and a WordPiece-ish mix of normalizers),
  each trained by `tokenizers`' BpeTrainer on a small local corpus.

cases.json: {"encode": [{"text", "with_special", "without_special"}],
             "decode": [{"ids", "skip_special", "keep_special"}]}
Expected ids come from tokenizers.Tokenizer.encode(text, add_special_tokens=...) on the stored files
(with transformers' update_post_processor applied when tokenizer_config.json sets add_bos_token /
add_eos_token); decoded text from Tokenizer.decode(ids, skip_special_tokens=...).

It also writes tiny versions of the trained tokenizers (300 tokens) as the seed corpus of
tests/fuzz/fuzz_tokenizer_json.cpp: tests/fuzz/corpus/tokenizer_json/.

Usage: python3 scripts/gen_hf_tokenizer_fixtures.py [make_seeds|make_qwen2|...]
(needs transformers, tokenizers, gguf; offline)
"""
import glob
import json
import os
import random
import shutil
import sys
import tempfile

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import AddedToken, Regex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "data", "hf_tokenizers")
TESTDATA = os.path.join(ROOT, "..", "shared", "testdata", "tokenizer")
DEFAULT_MODEL = os.path.expanduser("~/.cache/cvllm/SmolLM2-135M-Instruct.Q4_1.gguf")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

HARD_STRINGS = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n\n", " \n \t ", "\r\n", "a\r\nb",
    "Hello world", " Hello world", "Hello  world", "Hello world ", "hello, world!", "HELLO WORLD",
    "I'm can't won't they'll we've HE'S She'D",
    "caf\u00e9 cafe\u0301", "\u00c5 A\u030a \u212b", "\u1100\u1161\u11a8 \uac01", "\ufb01ne \uff26\uff55\uff4c\uff4c",
    "e\u0301\u0301\u0301", "\u0041\u0308\u0304", "\u2460\u2461 x\u00b2 \u00bd",
    "\u0130stanbul \u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3 \u03bf\u03b4\u03cc\u03c2",
    "\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 \U0001f1fa\U0001f1f8 \u2764\ufe0f",
    "\u4f60\u597d\u4e16\u754c\uff0c\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c",
    "\uc548\ub155\ud558\uc138\uc694", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35",
    "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440", "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5",
    "1", "12", "123", "1234", "12345678901234567890", "3.14159 2,718 1,000,000 -42 +7e10",
    "\u0661\u0662\u0663 \u0967\u0968\u0969 \uff11\uff12\uff13", "v1.2.3-rc4 0x1F 0b1010",
    "def f(x):\n\treturn x**2  # comment\n", "if (a<b && c>d) { return; }\n}\n",
    "    indented\n        more\n\ttabbed", "a" + " " * 20 + "b", "\n\n\n\n  \n", "x\t\t\ty",
    "\u00a0nbsp\u00a0 \u3000ideographic\u3000 zero\u200bwidth line\u2028sep",
    "a" * 300, "ab" * 80, "The quick brown fox jumps over the lazy dog. " * 3,
    "Hello\u2581world \u2581\u2581x", "<0x41> <0xE4><0xBD><0xA0>", "\x00\x01\x7f control",
    "!!!???... ---___ ''' \"\"\" ```", "\u201cquoted\u201d \u2018single\u2019 \u2014 \u2026",
    "https://example.com/path?q=1&r=2#frag user@example.org", "<html><body>Hi</body></html>",
    "\U00010348\U0001d11e\U0001f600", "\ufffd replacement", "\u0301leading combining",
]


def llama_cpp_strings():
    path = os.path.join(TESTDATA, "ggml-vocab-gpt-2.gguf.inp")
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n__ggml_vocab_test__\n")[:-1]


def added_token_strings(tok):
    """Texts that put the tokenizer's added tokens in context (lstrip/rstrip/single_word)."""
    out = []
    added = [t.content for t in tok.get_added_tokens_decoder().values()]
    added = [a for a in added if not (a.startswith("<0x") and len(a) == 6)][:12]
    for a in added:
        out += [f"x{a}y", f" {a} ", f"{a}{a}", f"a  {a}  b", f"Hello {a}\n\nworld", f"{a}\nnext", f"word{a}word"]
    if added:
        out.append(" ".join(added))
    return out


def corpus_for(tok):
    seen, out = set(), []
    for s in HARD_STRINGS + llama_cpp_strings() + added_token_strings(tok):
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def decode_id_lists(tok, encodings, rng):
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    lists = [e for e in encodings if e][:40]
    lists.append(list(range(min(vocab_size, 300))))
    for _ in range(30):
        lists.append([rng.randrange(vocab_size) for _ in range(rng.randrange(1, 24))])
    specials = sorted(t for t, a in tok.get_added_tokens_decoder().items())
    if specials:
        for _ in range(10):
            ids = [rng.randrange(vocab_size) for _ in range(8)]
            for _ in range(3):
                ids.insert(rng.randrange(len(ids) + 1), rng.choice(specials))
            lists.append(ids)
    byte_ids = [tok.token_to_id(f"<0x{b:02X}>") for b in range(256)]
    if all(i is not None for i in byte_ids):  # byte-fallback runs, valid and not
        text_ids = tok.encode("abc", add_special_tokens=False).ids
        for run in ([0xE4, 0xBD, 0xA0], [0xE4, 0xBD], [0xFF, 0x41], [0xF0, 0x9F, 0x98, 0x80], [0x20, 0x41]):
            lists.append([byte_ids[b] for b in run])
            lists.append(text_ids + [byte_ids[b] for b in run] + text_ids)
    return lists


def apply_config(tok, config):
    """transformers' update_post_processor, run when the config sets add_bos_token/add_eos_token."""
    if "add_bos_token" not in config and "add_eos_token" not in config and tok.post_processor is not None:
        return
    bos, eos = config.get("bos_token"), config.get("eos_token")
    add_bos = bool(config.get("add_bos_token", False)) and bos is not None
    add_eos = bool(config.get("add_eos_token", False)) and eos is not None
    single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
    special = []
    if add_bos:
        special.append((bos, tok.token_to_id(bos)))
    if add_eos:
        special.append((eos, tok.token_to_id(eos)))
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=special)


SEED_DIR = os.path.join(ROOT, "tests", "fuzz", "corpus", "tokenizer_json")
SEED_MODE = False  # write tiny fuzz seeds instead of fixtures


def vs(vocab_size):
    return 300 if SEED_MODE else vocab_size


def write_seed(name, tok_json, config):
    """Fuzz seeds: the tokenizer.json alone, and with its config after a NUL byte."""
    body = Tokenizer.from_str(tok_json).to_str(pretty=False).encode("utf-8")
    with open(os.path.join(SEED_DIR, name + ".json"), "wb") as f:
        f.write(body)
    with open(os.path.join(SEED_DIR, name + "-with-config.bin"), "wb") as f:
        f.write(body + b"\0" + json.dumps(config, ensure_ascii=False).encode("utf-8"))
    print(f"seed {name}: {len(body) // 1024} KB")


def write_fixture(name, tok_json, config, note, gguf=None):
    if SEED_MODE:
        write_seed(name, tok_json, config)
        return
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tok_json)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_str(tok_json)
    apply_config(tok, config)
    rng = random.Random(1234)
    encode = []
    for text in corpus_for(tok):
        encode.append({
            "text": text,
            "with_special": tok.encode(text, add_special_tokens=True).ids,
            "without_special": tok.encode(text, add_special_tokens=False).ids,
        })
    decode = []
    for ids in decode_id_lists(tok, [e["without_special"] for e in encode], rng):
        decode.append({
            "ids": ids,
            "skip_special": tok.decode(ids, skip_special_tokens=True),
            "keep_special": tok.decode(ids, skip_special_tokens=False),
        })
    cases = {"note": note, "gguf": gguf, "encode": encode, "decode": decode}
    with open(os.path.join(d, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print(f"{name}: {len(encode)} encode, {len(decode)} decode cases, {size // 1024} KB")


# --- converted from GGUF ---------------------------------------------------------------------------

def convert_gguf(path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
            tok_json = json.load(f)
        with open(os.path.join(tmp, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
    keep = ("bos_token", "eos_token", "unk_token", "pad_token", "add_bos_token", "add_eos_token")
    return tok_json, {k: config[k] for k in keep if k in config}


def compact(tok_json):
    return Tokenizer.from_str(json.dumps(tok_json)).to_str(pretty=False)


def make_converted():
    # SmolLM2: its real tokenizer.json splits digits before the byte-level regex.
    tj, config = convert_gguf(DEFAULT_MODEL)
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    write_fixture("smollm2", compact(tj), config, "SmolLM2-135M-Instruct GGUF via transformers",
                  gguf="~/.cache/cvllm/SmolLM2-135M-Instruct.Q4_1.gguf")
    tj, config = convert_gguf(os.path.join(TESTDATA, "ggml-vocab-gpt-2.gguf"))
    write_fixture("gpt2", compact(tj), config, "llama.cpp ggml-vocab-gpt-2.gguf via transformers",
                  gguf="ggml-vocab-gpt-2.gguf")
    # Llama 2: its real tokenizer.json (legacy) prepends "▁" to every stretch of text with a
    # normalizer; transformers' converter writes the newer Metaspace(prepend_scheme="first") form
    # instead, which mistral-style covers.
    tj, config = convert_gguf(os.path.join(TESTDATA, "ggml-vocab-llama-spm.gguf"))
    tj["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    tj["pre_tokenizer"] = None
    tj["model"]["unk_token"] = "<unk>"
    write_fixture("llama-spm", compact(tj), config,
                  "llama.cpp ggml-vocab-llama-spm.gguf via transformers, with Llama 2's legacy normalizer",
                  gguf="ggml-vocab-llama-spm.gguf")
    # Phi-3: added tokens swallow the whitespace after them, except <unk>, <s>, <|endoftext|>.
    tj, config = convert_gguf(os.path.join(TESTDATA, "ggml-vocab-phi-3.gguf"))
    for t in tj["added_tokens"]:
        t["rstrip"] = t["content"] not in ("<unk>", "<s>", "<|endoftext|>")
    write_fixture("phi-3", compact(tj), config,
                  "llama.cpp ggml-vocab-phi-3.gguf via transformers (Prepend normalizer, rstrip)",
                  gguf="ggml-vocab-phi-3.gguf")


# --- trained with real pipelines -------------------------------------------------------------------

def training_corpus():
    lines = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="ignore") as f:
                lines += f.read().splitlines()
    lines += HARD_STRINGS + llama_cpp_strings()
    lines += ["\u4f60\u597d\u4e16\u754c \u4eca\u5929\u5929\u6c14\u5f88\u597d \u6211\u4eec\u53bb\u516c\u56ed",
              "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440, \u043a\u0430\u043a \u0434\u0435\u043b\u0430?",
              "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe", "def main():\n    print('hi')\n    return 0\n"] * 20
    return lines


def byte_tokens():
    return [f"<0x{b:02X}>" for b in range(256)]


def train(tok, trainer, extra_vocab=()):
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    tj = json.loads(tok.to_str())
    if extra_vocab:  # tokens that belong in the model vocabulary but are not added tokens
        tj["added_tokens"] = [t for t in tj["added_tokens"] if t["content"] not in extra_vocab]
    return tj


def make_qwen2():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vs(1500), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    train(tok, trainer)
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("caf\u00e9!", special=False, normalized=True)])
    config = {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None}
    write_fixture("qwen2-style", tok.to_str(), config, "Qwen2 pipeline (NFC, Split regex, ByteLevel), trained")


def make_llama3():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    trainer = trainers.BpeTrainer(vocab_size=vs(1500), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    train(tok, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    write_fixture("llama3-style", tok.to_str(), config, "Llama 3 pipeline (Split regex, ByteLevel, ignore_merges), trained")


def make_gemma():
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    trainer = trainers.BpeTrainer(vocab_size=vs(1500), special_tokens=specials + byte_tokens())
    tj = train(tok, trainer, extra_vocab=set(byte_tokens()))
    tok = Tokenizer.from_str(json.dumps(tj))
    tok.add_tokens([AddedToken("\n\n", special=False, normalized=False),
                    AddedToken("<mask>", special=True, normalized=False, lstrip=True, rstrip=True)])
    # tokenizer_config flags replace the post-processor (transformers' update_post_processor).
    config = {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>",
              "add_bos_token": True, "add_eos_token": True}
    write_fixture("gemma-style", tok.to_str(), config,
                  "Gemma pipeline (Replace normalizer, byte fallback, no pre-tokenizer), trained; config adds BOS and EOS")


def make_roberta():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=vs(1200), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    train(tok, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    write_fixture("roberta-style", tok.to_str(), config,
                  "RoBERTa/OPT pipeline (ByteLevel with prefix space, RobertaProcessing, lstrip <mask>), trained")


def make_mixed():
    tok = Tokenizer(models.BPE(unk_token="[UNK]", fuse_unk=False, continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split("-", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[aeiou]"), behavior="merged_with_previous", invert=True)])
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    trainer = trainers.BpeTrainer(vocab_size=vs(800), special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                                  continuing_subword_prefix="##", limit_alphabet=200)
    train(tok, trainer)
    tok.add_tokens([AddedToken("hello world", single_word=True, normalized=True),
                    AddedToken("[x]", single_word=True, normalized=False, lstrip=True)])
    config = {"unk_token": "[UNK]"}
    write_fixture("mixed-style", tok.to_str(), config,
                  "NFKC+Lowercase+regex Replace+Strip, WhitespaceSplit/Punctuation/Digits/Split behaviors, "
                  "unk without fusing, ## prefix, no decoder, single_word tokens; trained")


def make_metaspace():
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
                                     decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vs(1000), special_tokens=specials + byte_tokens())
    tj = train(tok, trainer, extra_vocab=set(byte_tokens()))
    tok = Tokenizer.from_str(json.dumps(tj))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    write_fixture("metaspace-style", tok.to_str(), config,
                  "Metaspace (prepend always, split) pre-tokenizer and decoder, byte fallback; trained")


def make_falcon():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated", invert=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    specials = [">>TITLE<<", ">>ABSTRACT<<", "<|endoftext|>"]
    trainer = trainers.BpeTrainer(vocab_size=vs(1200), special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    train(tok, trainer)
    config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    write_fixture("falcon-style", tok.to_str(), config,
                  "Falcon pipeline (Punctuation, ByteLevel, then Digits and a Split on the byte-level "
                  "spelling), trained")


def make_mistral():
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"]
    trainer = trainers.BpeTrainer(vocab_size=vs(1000), special_tokens=specials + byte_tokens())
    tj = train(tok, trainer, extra_vocab=set(byte_tokens()))
    tok = Tokenizer.from_str(json.dumps(tj))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    write_fixture("mistral-style", tok.to_str(), config,
                  "Mistral / transformers' Llama converter pipeline (Metaspace prepend first, no split; "
                  "Replace+ByteFallback+Fuse+Strip decoder), trained")


def make_seeds():
    global SEED_MODE
    SEED_MODE = True
    os.makedirs(SEED_DIR, exist_ok=True)
    for fn in (make_qwen2, make_llama3, make_gemma, make_roberta, make_mixed, make_metaspace, make_mistral,
               make_falcon):
        fn()
    SEED_MODE = False


def main():
    only = set(sys.argv[1:])
    if os.path.isdir(OUT) and not only:
        shutil.rmtree(OUT)
    os.makedirs(OUT, exist_ok=True)
    for fn in (make_converted, make_qwen2, make_llama3, make_gemma, make_roberta, make_mixed, make_metaspace,
               make_mistral, make_falcon, make_seeds):
        if not only or fn.__name__ in only:
            fn()


if __name__ == "__main__":
    main()
