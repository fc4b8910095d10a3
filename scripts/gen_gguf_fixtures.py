#!/usr/bin/env python3
"""Writes the GGUF reader's fixtures with gguf-py and dumps what gguf-py's *reader* sees as JSON.

The C++ test (tests/unit/test_gguf.cpp) parses each .gguf and compares every metadata value and
tensor with the .json beside it, so the two independent readers check each other.

Outputs (tests/unit/data/gguf/):
  all_types.gguf/.json   v3, every metadata type (scalars, strings incl. unicode and empty,
                         arrays of each type, nested arrays, empty arrays), custom alignment 64,
                         tensors F32/F16/BF16/I32/Q8_0/Q4_1 (1-D to 4-D, one empty)
  v2.gguf/.json          the same layout with version 2 (the v2 and v3 layouts are identical for
                         little-endian files; v3 only added big-endian support)
  vocab_small.gguf/.json a vocabulary-only file cut from the gpt-2 testdata vocabulary
and copies all three into tests/fuzz/corpus/gguf/ as the fuzzer's seed corpus.

Usage: python3 scripts/gen_gguf_fixtures.py   (needs numpy and gguf; deterministic output)
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import gguf
import gguf.gguf_writer
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "unit" / "data" / "gguf"
CORPUS_DIR = ROOT / "tests" / "fuzz" / "corpus" / "gguf"
VOCAB_SOURCE = ROOT.parent / "shared" / "testdata" / "tokenizer" / "ggml-vocab-gpt-2.gguf"


class TypedArray(list):
    """A list that carries its GGUF element type, so nested arrays can use any element type."""

    def __init__(self, sub_type: VT, values):
        super().__init__(values)
        self.sub_type = sub_type


class Writer(gguf.GGUFWriter):
    """GGUFWriter that also writes empty arrays and typed inner arrays (both valid GGUF; the stock
    writer refuses the first and infers INT32/FLOAT32 for the second)."""

    def _pack_val(self, val, vtype, add_vtype, sub_type=None):
        if vtype == VT.ARRAY and sub_type is None and isinstance(val, TypedArray):
            sub_type = val.sub_type
        if vtype == VT.ARRAY and len(val) == 0:
            out = self._pack("I", vtype) if add_vtype else b""
            return out + self._pack("I", sub_type) + self._pack("Q", 0)
        return super()._pack_val(val, vtype, add_vtype, sub_type)


def add_all_metadata(w: Writer) -> None:
    w.add_uint8("test.uint8", 255)
    w.add_int8("test.int8", -128)
    w.add_uint16("test.uint16", 65535)
    w.add_int16("test.int16", -32768)
    w.add_uint32("test.uint32", 4294967295)
    w.add_int32("test.int32", -2147483648)
    w.add_uint64("test.uint64", 18446744073709551615)
    w.add_uint64("test.uint64_small", 42)
    w.add_int64("test.int64", -9223372036854775808)
    w.add_float32("test.float32", 3.14159)
    w.add_float32("test.float32_denormal", 1e-45)
    w.add_float32("test.float32_negzero", -0.0)
    w.add_float64("test.float64", 2.718281828459045)
    w.add_float64("test.float64_big", 1.7976931348623157e308)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "hello GGUF")
    w.add_string("test.string_unicode", "héllo wörld ✓ 日本語 🦙")
    w.add_key_value("test.string_empty", "", VT.STRING)  # add_string() skips empty strings
    w.add_key_value("test.string_raw_bytes", b"\xff\xfe not utf-8", VT.STRING)
    scalar_arrays = {
        VT.UINT8: [0, 1, 255],
        VT.INT8: [-128, 0, 127],
        VT.UINT16: [0, 65535],
        VT.INT16: [-32768, 32767],
        VT.UINT32: [0, 4294967295],
        VT.INT32: [-2147483648, 2147483647, 7],
        VT.UINT64: [0, 18446744073709551615],
        VT.INT64: [-9223372036854775808, 9223372036854775807],
        VT.FLOAT32: [0.5, -1.25, 1e30],
        VT.FLOAT64: [0.1, -1e-300],
        VT.BOOL: [True, False, True],
    }
    for vtype, values in scalar_arrays.items():
        w.add_key_value(f"test.array.{vtype.name.lower()}", values, VT.ARRAY, sub_type=vtype)
    w.add_key_value("test.array.string", ["a", "", "ünïcödé", "<|im_start|>"], VT.ARRAY,
                    sub_type=VT.STRING)
    w.add_key_value("test.array.empty_uint32", [], VT.ARRAY, sub_type=VT.UINT32)
    w.add_key_value("test.array.empty_string", [], VT.ARRAY, sub_type=VT.STRING)
    nested = [
        TypedArray(VT.UINT16, [1, 2, 3]),
        TypedArray(VT.STRING, ["x", ""]),
        TypedArray(VT.ARRAY, [TypedArray(VT.FLOAT64, [1.5]), TypedArray(VT.BOOL, [])]),
        TypedArray(VT.INT8, []),
    ]
    w.add_key_value("test.array.nested", nested, VT.ARRAY, sub_type=VT.ARRAY)
    w.add_name("all types fixture")
    w.add_block_count(3)


def add_tensors(w: Writer, rng: np.random.Generator) -> None:
    # numpy shapes are outermost-first; GGUF stores them innermost-first.
    w.add_tensor("f32.matrix", np.arange(3 * 5, dtype=np.float32).reshape(3, 5) * 0.25 - 1)
    w.add_tensor("f16.vector", rng.standard_normal(7).astype(np.float16))
    w.add_tensor("i32.3d", np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) - 10)
    w.add_tensor("f32.4d", rng.standard_normal((2, 1, 3, 2)).astype(np.float32))
    w.add_tensor("f32.empty", np.zeros((0, 4), dtype=np.float32))
    bf16 = gguf.quants.quantize(rng.standard_normal((2, 8)).astype(np.float32), QT.BF16)
    w.add_tensor("bf16.matrix", bf16, raw_dtype=QT.BF16)
    q8 = gguf.quants.quantize(rng.standard_normal((3, 64)).astype(np.float32), QT.Q8_0)
    w.add_tensor("q8_0.matrix", q8, raw_dtype=QT.Q8_0)
    q41 = gguf.quants.quantize(rng.standard_normal((4, 32)).astype(np.float32), QT.Q4_1)
    w.add_tensor("q4_1.matrix", q41, raw_dtype=QT.Q4_1)


def write(w: Writer) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_all_types(path: Path) -> None:
    w = Writer(path, "llama")
    w.add_custom_alignment(64)
    add_all_metadata(w)
    add_tensors(w, np.random.default_rng(1234))
    write(w)


def write_v2(path: Path) -> None:
    saved = gguf.gguf_writer.GGUF_VERSION
    gguf.gguf_writer.GGUF_VERSION = 2  # gguf-py only writes v3; the layout is the same
    try:
        w = Writer(path, "llama")
        w.add_uint32("test.uint32", 7)
        w.add_string("test.string", "version two")
        w.add_key_value("test.array.float32", [1.0, 2.0], VT.ARRAY, sub_type=VT.FLOAT32)
        add_tensors(w, np.random.default_rng(99))
        write(w)
    finally:
        gguf.gguf_writer.GGUF_VERSION = saved


def write_vocab_small(path: Path, num_tokens: int = 300, num_merges: int = 100) -> None:
    """The first tokens and merges of a real vocabulary file, keeping all its other keys."""
    src = gguf.GGUFReader(VOCAB_SOURCE)
    w = Writer(path, str(src.fields["general.architecture"].contents()))
    for name, field in src.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        value = field.contents()
        if vtype == VT.ARRAY:
            limit = num_merges if name.endswith(".merges") else num_tokens
            w.add_key_value(name, value[:limit], VT.ARRAY, sub_type=field.types[-1])
        else:
            w.add_key_value(name, value, vtype)
    write(w)


def decode_value(parts, i: int, vtype: VT):
    """Rebuilds a (possibly nested) value from gguf-py's flat ReaderField.parts."""
    if vtype == VT.STRING:
        raw = bytes(parts[i + 1])
        try:
            return raw.decode("utf-8"), i + 2
        except UnicodeDecodeError:
            return {"hex": raw.hex()}, i + 2
    if vtype == VT.ARRAY:
        element_type = VT(int(parts[i][0]))
        count = int(parts[i + 1][0])
        i += 2
        elements = []
        for _ in range(count):
            value, i = decode_value(parts, i, element_type)
            elements.append(value)
        return {"element_type": int(element_type), "elements": elements}, i
    scalar = parts[i][0]
    if vtype == VT.BOOL:
        return bool(scalar), i + 1
    if vtype in (VT.FLOAT32, VT.FLOAT64):
        return float(scalar), i + 1
    return int(scalar), i + 1


def dump_json(gguf_path: Path) -> None:
    reader = gguf.GGUFReader(gguf_path)
    metadata = []
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):  # the reader's pseudo-fields for the header
            continue
        vtype = field.types[0]
        value, end = decode_value(field.parts, 3, vtype)  # parts 0..2: key length, key, type
        assert end == len(field.parts), name
        metadata.append({"key": name, "type": int(vtype), "type_name": vtype.name.lower(),
                         "value": value})
    tensors = []
    for t in reader.tensors:
        tensors.append({
            "name": t.name,
            "shape": [int(d) for d in t.shape],
            "type": int(t.tensor_type),
            "offset": int(t.data_offset - reader.data_offset),
            "n_elements": int(t.n_elements),
            "n_bytes": int(t.n_bytes),
            "data_hex": t.data.tobytes().hex(),
        })
    doc = {
        "version": int(reader.fields["GGUF.version"].contents()),
        "alignment": int(reader.alignment),
        "data_offset": int(reader.data_offset),
        "file_size": gguf_path.stat().st_size,
        "metadata": metadata,
        "tensors": tensors,
    }
    gguf_path.with_suffix(".json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    outputs = {
        "all_types.gguf": write_all_types,
        "v2.gguf": write_v2,
        "vocab_small.gguf": write_vocab_small,
    }
    for name, writer in outputs.items():
        path = OUT_DIR / name
        writer(path)
        dump_json(path)
        shutil.copyfile(path, CORPUS_DIR / name)
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
