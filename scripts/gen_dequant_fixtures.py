#!/usr/bin/env python3
"""Writes the fixtures of tests/kernels/test_dequantize.cpp to tests/kernels/data/.

For every dtype dequantize_row supports: random blocks (random bytes, with the f16/f32 scale
fields overwritten by sane random scales so values stay finite) and what gguf-py's
`gguf.quants.dequantize` makes of them. gguf-py has no Q8_1/Q8_K dequantizer; for those two the
expected values are computed here from the block definition (d * q). Also a Q8_0 quantization
fixture: random floats and the blocks gguf-py's `quantize` (bit-exact with ggml) makes of them.

File format (little-endian): uint32 num_elements, uint32 num_bytes, the raw bytes, then
num_elements f32 (for quantization fixtures: the f32 input first, then the bytes).

Usage: python3 scripts/gen_dequant_fixtures.py   (deterministic: fixed seed)
"""
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "kernels", "data")

# dtype -> (number of blocks, byte offsets of f16 scales, byte offsets of f32 scales)
SPECS = {
    T.Q4_0: (16, [0], []),
    T.Q4_1: (16, [0, 2], []),
    T.Q5_0: (16, [0], []),
    T.Q5_1: (16, [0, 2], []),
    T.Q8_0: (16, [0], []),
    T.Q8_1: (16, [0, 2], []),
    T.Q2_K: (4, [80, 82], []),
    T.Q3_K: (4, [108], []),
    T.Q4_K: (4, [0, 2], []),
    T.Q5_K: (4, [0, 2], []),
    T.Q6_K: (4, [208], []),
    T.Q8_K: (4, [], [0]),
}


def random_scales(rng, n):
    """Magnitudes from 2^-12 to 2, either sign: covers small and large f16 exponents."""
    return (rng.choice([-1.0, 1.0], n) * 2.0 ** rng.uniform(-12, 1, n)).astype(np.float32)


def write(name, payload_bytes, floats, floats_first=False):
    floats = np.ascontiguousarray(floats, dtype="<f4")
    header = struct.pack("<II", floats.size, len(payload_bytes))
    body = floats.tobytes() + payload_bytes if floats_first else payload_bytes + floats.tobytes()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(header + body)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    for qtype, (num_blocks, f16_offsets, f32_offsets) in SPECS.items():
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        if qtype == T.Q8_1:
            # gguf-py's table still has the old 40-byte Q8_1 (f32 d and s); ggml's block_q8_1 is
            # two f16 and 32 int8 (36 bytes), as tensor/quant_blocks.h says.
            type_size = 36
        blocks = rng.integers(0, 256, size=(num_blocks, type_size), dtype=np.uint8)
        for off in f16_offsets:
            blocks[:, off:off + 2] = random_scales(rng, num_blocks).astype("<f2").view(np.uint8).reshape(-1, 2)
        for off in f32_offsets:
            blocks[:, off:off + 4] = random_scales(rng, num_blocks).astype("<f4").view(np.uint8).reshape(-1, 4)
        if qtype == T.Q8_1:
            d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)
            expected = d * blocks[:, 4:].view(np.int8).astype(np.float32)
        elif qtype == T.Q8_K:
            d = blocks[:, 0:4].copy().view("<f4")
            expected = d * blocks[:, 4:4 + 256].view(np.int8).astype(np.float32)
        else:
            expected = dequantize(blocks, qtype)
        write(f"dequant_{qtype.name.lower()}.bin", blocks.tobytes(), expected.reshape(-1))

    # Plain types: every 16-bit pattern class, NaN and infinities included (compared bitwise).
    f16_bits = rng.integers(0, 1 << 16, size=512, dtype=np.uint16)
    f16_bits[:6] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x7C00, 0xFC00]  # zeros, subnormals, infs
    write("dequant_f16.bin", f16_bits.tobytes(), f16_bits.view("<f2").astype(np.float32))
    bf16_bits = rng.integers(0, 1 << 16, size=512, dtype=np.uint16)
    write("dequant_bf16.bin", bf16_bits.tobytes(), dequantize(bf16_bits.view(np.uint8), T.BF16))
    f32 = rng.standard_normal(256).astype(np.float32)
    write("dequant_f32.bin", f32.tobytes(), f32)

    # Q8_0 quantization: normal values, one all-zero block, one block with exact .5 ties.
    x = rng.standard_normal(32 * 16).astype(np.float32) * 3
    x[32:64] = 0
    x[64:96] = (np.arange(32, dtype=np.float32) - 16) + 0.5
    x[64] = 127.0
    write("quant_q8_0.bin", quantize(x.reshape(1, -1), T.Q8_0).tobytes(), x, floats_first=True)


if __name__ == "__main__":
    main()
