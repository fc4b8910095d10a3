// ForwardContext: everything one forward pass needs besides weights — the backend, this step's
// metadata and the KV caches — passed explicitly (no globals). `dump` receives every named
// intermediate when set, so a golden test can point at the layer where two implementations part.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kernels/backend.h"

namespace cvllm {

struct ForwardContext {
  Backend& backend;
  const StepMetadata& step;
  std::vector<KVCacheLayer>& kv_caches;
  std::function<void(const std::string& name, const Tensor& value)> dump;

  int64_t num_tokens() const { return step.batch->num_tokens(); }
  void maybe_dump(const std::string& name, const Tensor& value) const {
    if (dump) dump(name, value);
  }
};

}  // namespace cvllm
