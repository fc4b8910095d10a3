#include "kernels/cuda/pdl.cuh"

#include <cstdlib>
#include <string>

namespace cvllm::cuda {

bool device_is_sm90_or_newer() {
  static const bool newer = [] {
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return major >= 9;
  }();
  return newer;
}

bool pdl_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("CVLLM_CUDA_PDL");
    if (env != nullptr && std::string(env) == "0") return false;
    return device_is_sm90_or_newer();
  }();
  return enabled;
}

}  // namespace cvllm::cuda
