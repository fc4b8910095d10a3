// Programmatic dependent launch (sm_90+): a kernel launched with launch_pdl may start while the
// previous kernel of its stream is still finishing, so its launch and the loads that do not depend
// on that kernel (weights, step metadata) overlap the previous kernel's tail. Such a kernel must
// call pdl_wait() before it touches memory the previous kernel writes or reads, and every block
// must call it before it exits, even one with nothing to do: a grid only counts as finished for
// the kernel after it once its own predecessor has, which keeps the ordering transitive. It calls
// pdl_launch_dependents() at its start, so the next kernel may be scheduled once all of this one's
// blocks are running. Both are no-ops where the launch had no programmatic dependency.
// CVLLM_CUDA_PDL=0 launches every kernel plainly (A/B runs).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/cuda_util.h"

namespace cvllm::cuda {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Whether the current device is sm_90 or newer (programmatic dependent launch, thread-block
// clusters); read once.
bool device_is_sm90_or_newer();

// Whether launches may carry the programmatic dependency: the device is sm_90 or newer and
// CVLLM_CUDA_PDL is not "0" (read once).
bool pdl_enabled();

// A launch configuration with programmatic serialization (when `pdl`) and, for cluster > 1,
// thread-block clusters of `cluster` blocks along x (sm_90+; grid.x a multiple of it). attrs
// holds the attributes the configuration points at.
inline cudaLaunchConfig_t launch_config(dim3 grid, dim3 block, size_t shared_bytes,
                                        cudaStream_t stream, unsigned cluster, bool pdl,
                                        cudaLaunchAttribute (&attrs)[2]) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = attrs;
  config.numAttrs = 0;
  if (cluster > 1) {
    attrs[config.numAttrs] = {};
    attrs[config.numAttrs].id = cudaLaunchAttributeClusterDimension;
    attrs[config.numAttrs].val.clusterDim.x = cluster;
    attrs[config.numAttrs].val.clusterDim.y = 1;
    attrs[config.numAttrs].val.clusterDim.z = 1;
    ++config.numAttrs;
  }
  if (pdl) {
    attrs[config.numAttrs] = {};
    attrs[config.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[config.numAttrs].val.programmaticStreamSerializationAllowed = 1;
    ++config.numAttrs;
  }
  return config;
}

template <typename... KernelArgs, typename... Args>
void launch_pdl(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t shared_bytes,
                cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t config =
      launch_config(grid, block, shared_bytes, stream, 1, pdl_enabled(), attrs);
  CVLLM_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<KernelArgs>(args)...));
}

// launch_pdl with thread-block clusters of `cluster` blocks along x.
template <typename... KernelArgs, typename... Args>
void launch_pdl_cluster(void (*kernel)(KernelArgs...), unsigned grid, unsigned block,
                        unsigned cluster, cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t config =
      launch_config(dim3(grid), dim3(block), 0, stream, cluster, pdl_enabled(), attrs);
  CVLLM_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<KernelArgs>(args)...));
}

}  // namespace cvllm::cuda
