#include "kernels/cuda/cuda_util.h"

#include "util/error.h"

namespace cvllm::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  // Clear a sticky-free error so the next call does not report it again.
  cudaGetLastError();
  throw Error(cat("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") in ",
                  call, " at ", file, ":", line));
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  throw Error(cat("cuBLAS error ", cublasLtGetStatusName(status), " (",
                  cublasLtGetStatusString(status), ") in ", call, " at ", file, ":", line));
}

}  // namespace cvllm::cuda
