// Error checking for CUDA runtime and cuBLASLt calls: every call's status is checked, and a failure
// becomes a cvllm::Error naming the call, where it was made and the library's message.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

namespace cvllm::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

inline void check_cuda(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, call, file, line);
}
inline void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) throw_cublas_error(status, call, file, line);
}

}  // namespace cvllm::cuda

#define CVLLM_CUDA_CHECK(call) ::cvllm::cuda::check_cuda((call), #call, __FILE__, __LINE__)
#define CVLLM_CUBLAS_CHECK(call) ::cvllm::cuda::check_cublas((call), #call, __FILE__, __LINE__)
// After every kernel launch: catches bad launch configurations at once (asynchronous faults
// surface at the next synchronizing call, which is checked too).
#define CVLLM_CUDA_CHECK_LAUNCH() CVLLM_CUDA_CHECK(cudaGetLastError())
