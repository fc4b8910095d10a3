#!/usr/bin/env python3
"""Tokenizer fixture for the default model (SmolLM2-135M-Instruct GGUF), made with HF `tokenizers`.

The reference is the tokenizer SmolLM2's own tokenizer.json describes, rebuilt from the GGUF's
vocabulary: a byte-level BPE (vocab = tokenizer.ggml.tokens, merges = tokenizer.ggml.merges, no unk
token, so a byte missing from the alphabet is dropped), pre-tokenizer
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)] (the
"smollm" pre-type; SmolLM2's tokenizer.json pins exactly this, with no normalizer), ByteLevel
decoder, and the control tokens (token_type 3) as special added tokens. No BOS/EOS is added
(tokenizer.ggml.add_bos_token is false).

transformers' own GGUF conversion (AutoTokenizer.from_pretrained(dir, gguf_file=...)) is also run
and compared. It builds a plain GPT2Tokenizer (ByteLevel with the GPT-2 regex) because it does not
know the "smollm" pre-type, so it misses the Digits split. It shows where a run of spaces precedes a
digit ("    1." becomes 3 spaces + " 1" instead of 4 spaces + "1") and on other numeric characters
(Arabic-Indic digits, "½", "²"...), which it merges with the preceding space. Those differences are recorded under
"transformers_gguf_differences" and printed; they are why it is not the reference.

Output: tests/golden/data/tokenizer_smollm2.json
  model, model_sha256, tokenizers_version, transformers_version
  encode: [{text, ids, ids_no_special}]   ids: add_special_tokens=True, ids_no_special: False
  decode: [{ids, skip_special_tokens, text}]
  transformers_gguf_differences: [{text, reference, transformers}]

A second fixture covers the sentencepiece-style path on llama.cpp's Llama 2 test vocabulary
(shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf), with Llama 2's (legacy) tokenizer.json
pipeline: normalizer Sequence[Prepend("▁"), Replace(" ", "▁")] applied to each stretch between added
tokens, no pre-tokenizer, BPE with byte_fallback and fuse_unk (merges derived from the scores the way
transformers derives them for a GGUF), post-processor "<s> $A", decoder Sequence[Replace("▁", " "),
ByteFallback, Fuse, Strip(left=1)]. Written to tests/golden/data/tokenizer_llama_spm.json in the same
format (without the transformers comparison).

A third fixture, tests/golden/data/tokenizer_pre_tokenizers.json, checks every `tokenizer.ggml.pre`
name the C++ tokenizer knows: HF's pre_tokenize_str on the corpus, with the pre_tokenizer pipeline
of that model family's tokenizer.json (the Split regexes of Llama 3, Qwen2, tekken and GPT-4o are
transformers' own constants), as the byte-level-spelled words:
  texts: [...], families: [{names: [pre names], words: [[word, ...] per text]}]

Usage: python3 scripts/gen_tokenizer_fixtures.py [--model PATH] [--spm-vocab PATH] [--out-dir DIR]
"""

import argparse
import hashlib
import json
import os
import random
import sys
from importlib import metadata

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

SPECIALS_IN_TEXT = [
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|im_start|><|im_end|><|im_start|>",
    "not special: <|im_start |> <|im_end| > < |im_start|>",
    "<|im_start|>user\n   leading spaces<|im_end|>   trailing",
    "<repo_name>cvllm<file_sep>main.cpp\nint main() {}",
    "unfinished <|im_sta",
]

CORPUS = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n\n",
    "\r\n",
    " \t \n \r\n  \t\t\n",
    "Hello world",
    " Hello world",
    "Hello, world! How's it going? I'm fine, you're great, they'll see, we've been, he'd go.",
    "HOW'S IT GOING? I'M FINE. WE'VE BEEN. THEY'LL. HE'D.",
    "don't can't won't isn't aren't",
    "'s 't 're 've 'm 'll 'd",
    "3",
    "12",
    "123",
    "1234567890",
    " 2024",
    "In 2024, 1,234,567.89 people paid $3.50 (or 3.5e-10) for 007 items; π≈3.14159265358979323846.",
    "Numbers: 0 00 000 0000 00000 123456789012345678901234567890",
    "Steps:\n    1. first\n    2. second\n\t3. third\nx  42  y   7",
    "١٢٣ ٤٥٦ (Arabic-Indic digits) ½ ¾ ² ³ Ⅻ ⑤",
    "Führer Cửa Việt naïve café crème brûlée",
    "cafe\u0301 nai\u0308ve (combining marks, not NFC)",
    "нещо на Български, Привет мир!",
    "Ελληνικά γράμματα",
    "東京は日本の首都です。我想在apple工作1314151天～",
    "한국어 텍스트입니다",
    "مرحبا بالعالم",
    "שלום עולם",
    "ភាសាខ្មែរ កាន់តែពិសេសអាចខលចេញ",
    "हिन्दी भाषा",
    "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙 👍🏽 🇺🇸 ❤️",
    "Emoji at end 😁",
    "😀😀😀😀😀",
    "zero\u200bwidth\u200c joiner\u200d and\u00a0nbsp\u2009thin\u3000ideographic",
    "mixed\u2028line\u2029para\u0085nel",
    "     Hello\n    Hello\n\tHello",
    "a    b     c      d",
    "trailing spaces   ",
    "!!!!!!??????......------=======",
    "'''''''```````\"\"\"\"",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "int main(int argc, char** argv) {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v[0] == 1 ? 0 : -1;\n}\n",
    "<div class=\"x\">&amp; &lt;tag&gt;</div>",
    "https://example.com/path?query=1&x=y#frag user@example.org",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "SELECT * FROM users WHERE id = 42;",
    "x^2 + y^2 = z^2 → ∀ε>0 ∃δ>0 ∑∫∂√∞",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "control\x01chars\x04and\x06missing\x13bytes\x7f",
    "a\x04b",
    "ſ long s and K kelvin and ﬁ ligature",
    "Ǆ ǅ ǆ titlecase",
    "The quick brown fox jumps over the lazy dog. " * 3,
    " ".join(str(i) for i in range(100)),
] + SPECIALS_IN_TEXT


PRE_CORPUS_EXTRA = [
    "I'VE BEEN THERE, YOU'LL SEE, IT'S ſ'S",
    "CamelCaseXMLHttpRequest getHTTPResponseCode iPhone ΣίσυφοςΣ",
    "mongolian\u180evowel separator",
    "1234567 12345678 3.14 3..3 3...3",
    "line1\r\nline2\r\n\r\n  \n\t\n",
    "path/to/file.txt // comment /* block */",
    "end with spaces and newline  \n  ",
    "\u3000\u3000全角スペース、句読点。カタカナ ひらがな",
    "Hello. World, again! Really? Yes… 。，、।۔،",
]


def pre_tokenizer_families():
    """HF pre_tokenizer pipelines, by family, and the `tokenizer.ggml.pre` names that use each."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        _GPT4O_SPLIT, _LLAMA3_SPLIT, _QWEN2_SPLIT, _TEKKEN_SPLIT)
    from tokenizers import Regex

    P = pre_tokenizers

    def split(pattern):
        return P.Split(Regex(pattern), behavior="isolated", invert=False)

    def byte_level(use_regex):
        return P.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=use_regex)

    # Written with \x{...} escapes: an editor or copy that normalizes Unicode (NFC turns U+1F7D into
    # U+03CE) would silently change the class.
    deepseek_letters = (
        r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}"
        r"\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}"
        r"\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}"
        r"\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}"
        r"\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}"
        r"\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}"
        r"\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}"
        r"\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}"
        r"\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}"
        r"\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}"
        r"\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}"
        r"\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}"
        r"\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}"
        r"\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}"
        r"\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}"
        r"\x{1E900}-\x{1E943}]+"
    )
    cjk = r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+"
    bloom = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+"
    return [
        (["gpt2", "gpt-2", "default", "mpt", "olmo", "jais", "phi-2", "roberta-bpe"], P.Sequence([byte_level(True)])),
        (["starcoder", "smollm", "refact", "command-r", "codeshell", "exaone", "minerva-7b"],
         P.Sequence([P.Digits(individual_digits=True), byte_level(True)])),
        (["falcon"], P.Sequence([P.Punctuation("contiguous"), byte_level(True), P.Digits(individual_digits=False),
                                 split("[0-9][0-9][0-9]")])),
        (["llama3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe"], P.Sequence([split(_LLAMA3_SPLIT), byte_level(False)])),
        (["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"], P.Sequence([split(_QWEN2_SPLIT), byte_level(False)])),
        (["tekken"], P.Sequence([split(_TEKKEN_SPLIT), byte_level(False)])),
        (["gpt-4o", "llama4"], P.Sequence([split(_GPT4O_SPLIT), byte_level(False)])),
        (["deepseek-llm"], P.Sequence([split("[\r\n]"), split(deepseek_letters), split(r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+"),
                                       split("\\s+$"), split(cjk), P.Digits(individual_digits=True), byte_level(False)])),
        (["deepseek-coder"], P.Sequence([split("[\r\n]"), split("\\s?\\p{L}+"), split("\\s?\\p{P}+"), split(cjk),
                                         P.Digits(individual_digits=True), byte_level(False)])),
        (["deepseek-v3"], P.Sequence([split("\\p{N}{1,3}"), split(r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+"),
                                      split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
                                            "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
                                      byte_level(False)])),
        (["bloom", "poro-chat", "gpt3-finnish"], P.Sequence([split(bloom), byte_level(False)])),
        (["viking"], P.Sequence([split(bloom), P.Digits(individual_digits=True), byte_level(False)])),
    ]


def write_pre_tokenizer_fixture(out_path):
    texts = [t for t in CORPUS + PRE_CORPUS_EXTRA if t]
    families = []
    for names, pipeline in pre_tokenizer_families():
        families.append({"names": names, "words": [[w for w, _ in pipeline.pre_tokenize_str(t)] for t in texts]})
    fixture = {"generator": "scripts/gen_tokenizer_fixtures.py", "tokenizers_version": metadata.version("tokenizers"),
               "texts": texts, "families": families}
    with open(out_path, "w") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out_path}: {len(families)} pre-tokenizer families x {len(texts)} texts")


def read_vocab(path):
    reader = gguf.GGUFReader(path)

    def strings(key):
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    def numbers(key, cast):
        field = reader.fields[key]
        return [cast(field.parts[i][0]) for i in field.data]

    def scalar(key):
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    vocab = {
        "model": scalar("tokenizer.ggml.model"),
        "pre": scalar("tokenizer.ggml.pre"),
        "tokens": strings("tokenizer.ggml.tokens"),
        "types": numbers("tokenizer.ggml.token_type", int),
        "add_bos": scalar("tokenizer.ggml.add_bos_token"),
        "add_eos": scalar("tokenizer.ggml.add_eos_token"),
        "bos": scalar("tokenizer.ggml.bos_token_id"),
    }
    if "tokenizer.ggml.merges" in reader.fields:
        vocab["merges"] = strings("tokenizer.ggml.merges")
    if "tokenizer.ggml.scores" in reader.fields:
        vocab["scores"] = numbers("tokenizer.ggml.scores", float)
    return vocab


def build_smollm2(vocab):
    if vocab["model"] != "gpt2" or vocab["pre"] != "smollm":
        sys.exit(f"expected a gpt2 vocabulary with pre-type smollm, got {vocab['model']!r} / {vocab['pre']!r}")
    if vocab["add_bos"] or vocab["add_eos"]:
        sys.exit("this script assumes SmolLM2 adds no BOS/EOS; extend it for this model")
    tokens, types = vocab["tokens"], vocab["types"]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                     merges=[tuple(m.split(" ", 1)) for m in vocab["merges"]], unk_token=None,
                     fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


def build_llama_spm(vocab):
    from transformers.tokenization_utils_base import generate_merges

    if vocab["model"] != "llama" or not vocab["add_bos"] or vocab["add_eos"]:
        sys.exit("expected a llama (sentencepiece) vocabulary that adds BOS only")
    tokens, types = vocab["tokens"], vocab["types"]
    index = {t: i for i, t in enumerate(tokens)}
    merges = generate_merges(index, dict(zip(tokens, vocab["scores"])))
    bpe = models.BPE(vocab=index, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    bos = tokens[vocab["bos"]]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab["bos"])])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty in (2, 3)])
    return tok


def byte_pieces(vocab):
    """Tokens that stand for one byte: the lead and continuation bytes of multi-byte characters, so
    random sequences of them split characters and make invalid UTF-8 (HF then writes U+FFFD)."""
    tokens, types = vocab["tokens"], vocab["types"]
    if vocab["model"] == "llama":
        return [i for i, ty in enumerate(types) if ty == 6 and int(tokens[i][3:5], 16) >= 0x80]
    alphabet = {tokens[i]: i for i in range(len(tokens)) if types[i] == 1}
    return [alphabet[c] for c in "ÂÃâðŁĺĢ¤¥¦§¨©ª«¬®¯°±²³´µ¶·¸¹º»¼½¾¿" if c in alphabet]


def decode_cases(tok, vocab, encoded, seed=1234):
    """Encoded corpus ids, plus random sequences mixing byte tokens that split UTF-8 characters,
    control tokens and ordinary ones; each with skip_special_tokens on and off."""
    rng = random.Random(seed)
    tokens, types = vocab["tokens"], vocab["types"]
    specials = [i for i, ty in enumerate(types) if ty in (2, 3)]
    pieces = byte_pieces(vocab)
    sequences = [ids for ids in encoded if ids]
    for _ in range(60):
        length = rng.randint(1, 24)
        seq = []
        for _ in range(length):
            r = rng.random()
            if r < 0.35:
                seq.append(rng.choice(pieces))
            elif r < 0.5:
                seq.append(rng.choice(specials))
            else:
                seq.append(rng.randrange(len(tokens)))
        sequences.append(seq)
    cases = []
    for ids in sequences:
        for skip in (True, False):
            cases.append({"ids": ids, "skip_special_tokens": skip, "text": tok.decode(ids, skip_special_tokens=skip)})
    return cases


def transformers_differences(model_path, reference, texts):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return None
    hf = AutoTokenizer.from_pretrained(os.path.dirname(model_path), gguf_file=os.path.basename(model_path))
    diffs = []
    for text in texts:
        ref = reference.encode(text, add_special_tokens=False).ids
        got = hf(text, add_special_tokens=False)["input_ids"]
        if ref != got:
            diffs.append({"text": text, "reference": ref, "transformers": got})
    return diffs


def write_fixture(tok, vocab, model_path, out_path, diffs=None):
    encode_cases = []
    encoded = []
    for text in CORPUS:
        ids = tok.encode(text, add_special_tokens=True).ids
        ids_no_special = tok.encode(text, add_special_tokens=False).ids
        encode_cases.append({"text": text, "ids": ids, "ids_no_special": ids_no_special})
        encoded.append(ids_no_special)
    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "model": os.path.basename(model_path),
        "model_sha256": sha,
        "vocab_size": len(vocab["tokens"]),
        "generator": "scripts/gen_tokenizer_fixtures.py",
        "tokenizers_version": metadata.version("tokenizers"),
        "transformers_version": metadata.version("transformers"),
        "encode": encode_cases,
        "decode": decode_cases(tok, vocab, encoded),
    }
    if diffs is not None:
        fixture["transformers_gguf_differences"] = diffs
    with open(out_path, "w") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out_path}: {len(encode_cases)} encode and {len(fixture['decode'])} decode cases")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.expanduser("~/.cache/cvllm/SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--spm-vocab", default=os.path.join(root, "../shared/testdata/tokenizer/ggml-vocab-llama-spm.gguf"))
    parser.add_argument("--out-dir", default=os.path.join(root, "tests/golden/data"))
    args = parser.parse_args()

    vocab = read_vocab(args.model)
    tok = build_smollm2(vocab)
    diffs = transformers_differences(args.model, tok, CORPUS)
    if diffs is not None:
        print(f"transformers' GGUF conversion differs from the tokenizer.json pipeline on {len(diffs)} "
              f"of {len(CORPUS)} strings", file=sys.stderr)
        for d in diffs[:5]:
            print(f"  {d['text'][:60]!r}", file=sys.stderr)
    write_fixture(tok, vocab, args.model, os.path.join(args.out_dir, "tokenizer_smollm2.json"), diffs or [])

    write_pre_tokenizer_fixture(os.path.join(args.out_dir, "tokenizer_pre_tokenizers.json"))

    spm_vocab = read_vocab(args.spm_vocab)
    write_fixture(build_llama_spm(spm_vocab), spm_vocab, args.spm_vocab,
                  os.path.join(args.out_dir, "tokenizer_llama_spm.json"))


if __name__ == "__main__":
    main()
