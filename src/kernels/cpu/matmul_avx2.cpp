#include "kernels/cpu/matmul_internal.h"

namespace cvllm::cpu::internal {
const KernelSet& avx2_kernels() { return scalar_kernels(); }
}  // namespace cvllm::cpu::internal
