#include "kernels/cuda/gemm.h"

#include <cstdint>

#include "kernels/cuda/cuda_allocator.h"
#include "kernels/cuda/cuda_util.h"
#include "util/error.h"

namespace cvllm::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLAS's recommendation for Hopper
constexpr int kHeuristicCandidates = 8;
// Rows the batch-invariant algorithm is chosen for: a mid-sized batch, so neither decode (n of a
// few) nor long prefills (n in the thousands) get a kernel tuned for the other extreme.
constexpr int64_t kReferenceTokens = 64;

// Largest power of two (up to 256) dividing the address: cuBLASLt's kernels assume the alignment
// the heuristic was asked for.
int alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  int a = 256;
  while (a > 1 && v % static_cast<uintptr_t>(a) != 0) a /= 2;
  return a;
}

}  // namespace

CublasLtGemm::CublasLtGemm(std::shared_ptr<DeviceAllocator> allocator, cudaStream_t stream,
                           bool batch_invariant)
    : allocator_(std::move(allocator)), stream_(stream), batch_invariant_(batch_invariant) {
  CVLLM_CUBLAS_CHECK(cublasLtCreate(&handle_));
  CVLLM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // Column-major view: Y^T[m, n] = W[m, k] X^T[k, n]; W row-major [m, k] is column-major [k, m],
  // hence op(A) = transpose.
  cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  CVLLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                                    sizeof(trans_a)));
  CVLLM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                                    sizeof(trans_b)));
  workspace_ = allocator_->allocate(kWorkspaceBytes);
  workspace_bytes_ = kWorkspaceBytes;
}

CublasLtGemm::~CublasLtGemm() {
  for (auto& [key, plan] : plans_) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
  }
  if (desc_) cublasLtMatmulDescDestroy(desc_);
  if (handle_) cublasLtDestroy(handle_);
}

bool CublasLtGemm::heuristic(cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                             cublasLtMatrixLayout_t c, int align_w, int align_x, int align_y,
                             cublasLtMatmulAlgo_t* algo) {
  cublasLtMatmulPreference_t pref = nullptr;
  CVLLM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, auto value) {
    CVLLM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(workspace_bytes_));
  set_pref(CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
           static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_NONE));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, static_cast<uint32_t>(align_w));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, static_cast<uint32_t>(align_x));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, static_cast<uint32_t>(align_y));
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, static_cast<uint32_t>(align_y));
  cublasLtMatmulHeuristicResult_t results[kHeuristicCandidates];
  int found = 0;
  cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle_, desc_, a, b, c, c, pref,
                                                         kHeuristicCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  CVLLM_CUBLAS_CHECK(status);
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    int32_t split_k = 1;
    size_t written = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&results[i].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM,
                                             &split_k, sizeof(split_k), &written) !=
            CUBLAS_STATUS_SUCCESS ||
        written != sizeof(split_k)) {
      split_k = 1;
    }
    if (split_k <= 1) {
      *algo = results[i].algo;
      return true;
    }
  }
  return false;
}

const cublasLtMatmulAlgo_t* CublasLtGemm::reference_algo(int64_t m, int64_t k, int align_w,
                                                         int align_x, int align_y,
                                                         cudaDataType out_type) {
  auto key = std::make_tuple(m, k, align_w, align_x, align_y, static_cast<int>(out_type));
  auto it = reference_algos_.find(key);
  if (it == reference_algos_.end()) {
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    CVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, k, m, k));
    CVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, k, kReferenceTokens, k));
    CVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c, out_type, m, kReferenceTokens, m));
    cublasLtMatmulAlgo_t algo{};
    bool ok = heuristic(a, b, c, align_w, align_x, align_y, &algo);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(c);
    it = reference_algos_.emplace(key, ok ? std::optional(algo) : std::nullopt).first;
  }
  return it->second ? &*it->second : nullptr;
}

CublasLtGemm::Plan& CublasLtGemm::plan_for(const Key& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  const auto [m, n, k, align_w, align_x, align_y, out_type] = key;
  Plan plan;
  CVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_16BF, k, m, k));
  CVLLM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_16BF, k, n, k));
  CVLLM_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&plan.c, static_cast<cudaDataType>(out_type), m, n, m));
  bool chosen = false;
  if (batch_invariant_) {
    if (const cublasLtMatmulAlgo_t* ref = reference_algo(m, k, align_w, align_x, align_y,
                                                         static_cast<cudaDataType>(out_type))) {
      cublasLtMatmulHeuristicResult_t check{};
      if (cublasLtMatmulAlgoCheck(handle_, desc_, plan.a, plan.b, plan.c, plan.c, ref, &check) ==
              CUBLAS_STATUS_SUCCESS &&
          check.workspaceSize <= workspace_bytes_) {
        plan.algo = *ref;
        chosen = true;
      }
    }
  }
  if (!chosen) chosen = heuristic(plan.a, plan.b, plan.c, align_w, align_x, align_y, &plan.algo);
  if (!chosen) {
    cublasLtMatrixLayoutDestroy(plan.a);
    cublasLtMatrixLayoutDestroy(plan.b);
    cublasLtMatrixLayoutDestroy(plan.c);
    throw Error(cat("cuBLASLt has no bf16 GEMM algorithm without split-K for m=", m, " n=", n,
                    " k=", k));
  }
  return plans_.emplace(key, plan).first->second;
}

void CublasLtGemm::run(const __nv_bfloat16* w, const __nv_bfloat16* x, float* y, int64_t m,
                       int64_t n, int64_t k) {
  run_any(w, x, y, CUDA_R_32F, m, n, k);
}

void CublasLtGemm::run(const __nv_bfloat16* w, const __nv_bfloat16* x, __nv_bfloat16* y, int64_t m,
                       int64_t n, int64_t k) {
  run_any(w, x, y, CUDA_R_16BF, m, n, k);
}

void CublasLtGemm::run_any(const __nv_bfloat16* w, const __nv_bfloat16* x, void* y,
                           cudaDataType out_type, int64_t m, int64_t n, int64_t k) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum (bf16 zero is all-zero bytes too)
    const size_t element = out_type == CUDA_R_32F ? sizeof(float) : sizeof(__nv_bfloat16);
    CVLLM_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(m * n) * element, stream_));
    return;
  }
  Plan& plan = plan_for(Key{m, n, k, alignment_of(w), alignment_of(x), alignment_of(y),
                            static_cast<int>(out_type)});
  const float alpha = 1.0f, beta = 0.0f;
  CVLLM_CUBLAS_CHECK(cublasLtMatmul(handle_, desc_, &alpha, w, plan.a, x, plan.b, &beta, y, plan.c,
                                    y, plan.c, &plan.algo, workspace_.get(), workspace_bytes_,
                                    stream_));
}

}  // namespace cvllm::cuda
