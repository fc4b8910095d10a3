// Which SIMD instruction set the CPU kernels use. Detected once with CPUID (and XGETBV, so a CPU
// whose OS does not save the wide registers counts as not having them); lowered for testing by
// the environment variable CVLLM_CPU_ISA=scalar|avx2|avx512 or by `set_isa`. Every kernel family
// keeps a plain C++ path, so one binary runs on any x86-64 (and builds elsewhere).
#pragma once

#include <optional>
#include <string_view>

namespace cvllm::cpu {

// Ordered: a level implies every lower one.
enum class Isa {
  kScalar = 0,
  kAvx2 = 1,    // AVX2 + FMA + F16C
  kAvx512 = 2,  // AVX-512 F, BW, VL, DQ and VNNI (Ice Lake, Zen 4 and later)
};

// The best level this CPU and OS support.
Isa detected_isa();

// The level kernels use now: the detected one unless lowered by CVLLM_CPU_ISA (read on first use)
// or `set_isa`.
Isa current_isa();

// Name as CVLLM_CPU_ISA spells it ("scalar", "avx2", "avx512") -> level; nullopt if unknown.
std::optional<Isa> parse_isa(std::string_view name);

// Use `isa` from now on (tests run every path this way). Throws cvllm::ValueError if the CPU
// lacks it. Not thread-safe against running kernels: call between matmuls.
void set_isa(Isa isa);

// "avx512_vnni", "avx2" or "scalar".
std::string_view isa_name(Isa isa);

// Which ISA the fast matmul path uses on this machine now: isa_name(current_isa()).
std::string_view active_isa();

}  // namespace cvllm::cpu
