#include "kernels/cpu/cpu_features.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "util/error.h"
#include "util/logging.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace cvllm::cpu {
namespace {

#if defined(__x86_64__) || defined(__i386__)
uint64_t read_xcr0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

Isa detect() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Isa::kScalar;
  const bool osxsave = ecx & (1u << 27);
  const bool fma = ecx & (1u << 12);
  const bool f16c = ecx & (1u << 29);
  if (!osxsave) return Isa::kScalar;
  const uint64_t xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // XMM and YMM state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;  // plus opmask and ZMM state
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::kScalar;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool bmi2 = ebx & (1u << 8);
  const bool avx512f = ebx & (1u << 16);
  const bool avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30);
  const bool avx512vl = ebx & (1u << 31);
  const bool avx512vnni = ecx & (1u << 11);
  if (!(os_ymm && avx2 && fma && f16c && bmi2)) return Isa::kScalar;
  if (os_zmm && avx512f && avx512dq && avx512bw && avx512vl && avx512vnni) return Isa::kAvx512;
  return Isa::kAvx2;
}
#else
Isa detect() {
  return Isa::kScalar;
}
#endif

// -1 until first use; then the level as an int. Relaxed atomics: kernels read it once per call.
std::atomic<int> g_current{-1};

Isa initial_isa() {
  Isa isa = detected_isa();
  if (const char* env = std::getenv("CVLLM_CPU_ISA"); env && *env) {
    std::optional<Isa> wanted = parse_isa(env);
    if (!wanted) {
      LOG_WARNING("ignoring unknown CVLLM_CPU_ISA=", env, " (use scalar, avx2 or avx512)");
    } else if (*wanted > isa) {
      LOG_WARNING("CVLLM_CPU_ISA=", env, " is not supported by this CPU; using ", isa_name(isa));
    } else {
      isa = *wanted;
    }
  }
  return isa;
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa current_isa() {
  int v = g_current.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(initial_isa());
    g_current.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

std::optional<Isa> parse_isa(std::string_view name) {
  if (name == "scalar") return Isa::kScalar;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512" || name == "avx512_vnni") return Isa::kAvx512;
  return std::nullopt;
}

void set_isa(Isa isa) {
  if (isa > detected_isa()) {
    throw ValueError(cat("ISA ", isa_name(isa),
                         " is not supported by this CPU (best: ", isa_name(detected_isa()), ")"));
  }
  g_current.store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512_vnni";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kScalar:
      break;
  }
  return "scalar";
}

std::string_view active_isa() {
  return isa_name(current_isa());
}

}  // namespace cvllm::cpu
