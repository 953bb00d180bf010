// Native implementations of the fused search ops (see frsengine/ops/ (fused_mixed.py, beta_aggregation.py) for the op contracts and
// the plain PyTorch references they are tested against).
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

// Bump together with EXT_API_VERSION in frsengine/ops/_ext.py when a schema or semantics change.
#define FRSENGINE_EXT_API 4

namespace frsengine {

using at::Tensor;
using MixedOpGrads = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>;

// The mixed op's candidate convolutions, in alpha/BN-row order (padding k / 2, stride 1).
constexpr int64_t kKernelSizes[3] = {3, 5, 7};

// A small tensor (BN parameters, statistics, alpha) as host doubles.
std::vector<double> to_doubles(const Tensor& t);
// Training/eval BatchNorm of the (3, G*C) branches as an affine map per entry: y = z * scale + shift.
struct BnAffine {
  std::vector<double> invstd, scale, shift;
};
BnAffine bn_affine(const Tensor& gamma, const Tensor& beta, const std::vector<double>& mean,
                   const std::vector<double>& var, double eps);

// ---- device-independent convolution part of the mixed op (ATen: oneDNN on CPU, cuDNN on GPU)
// How the three convolutions run: one stacked 7x7 convolution or three; on a channels_last copy of
// x; in `dtype` (e.g. bfloat16 under autocast: x and the kernels are cast for the convolution, the
// outputs come back in x's dtype, so statistics and the epilogue stay in x's precision).
struct ConvConfig {
  bool stacked = false;
  bool channels_last = false;
  std::optional<at::ScalarType> dtype;
  at::ScalarType dtype_for(const Tensor& x) const { return dtype.value_or(x.scalar_type()); }
};
// Stride-1 convolution with padding k/2 (odd k x k kernel) and its backward (undefined tensors where
// not needed): width-paired on CPU for channels_last x with few channels (csrc/paired_conv.cpp;
// FRSENGINE_CONV_PAIRING=auto|on|off), one ATen convolution otherwise.
bool width_paired(const Tensor& x, const Tensor& w);
Tensor conv_same(const Tensor& x, const Tensor& w);
std::pair<Tensor, Tensor> conv_same_backward(const Tensor& grad_y, const Tensor& x, const Tensor& w,
                                             bool need_input_grad, bool need_weight_grad);
// z_3, z_5, z_7 (contiguous NCHW in x's dtype; views into one (N, 3C, H, W) tensor when stacked).
std::vector<Tensor> mixed_convs(const Tensor& x, const Tensor& w3, const Tensor& w5, const Tensor& w7,
                                const ConvConfig& cfg);
// `saved` ((3, N, C, H, W), keep mode) split into z_k, or the recomputed convolutions when empty.
std::vector<Tensor> saved_or_recomputed_convs(const Tensor& saved, const Tensor& x, const Tensor& w3,
                                              const Tensor& w5, const Tensor& w7, const ConvConfig& cfg);
// Forward convolutions: (z_k, saved); with keep the z_k are views of one contiguous (3, N, C, H, W)
// `saved` tensor (written once), else mixed_convs' outputs and an empty `saved`.
std::pair<std::vector<Tensor>, Tensor> forward_convs(const Tensor& x, const Tensor& w3, const Tensor& w5,
                                                     const Tensor& w7, const ConvConfig& cfg, bool keep);
// (G*n, C, H, W) -> (n, G*C, H, W) view of a contiguous tensor (groups interleaved along the batch).
Tensor grouped_view(const Tensor& t, int64_t groups);
std::vector<Tensor> grouped_views(const std::vector<Tensor>& zs, int64_t groups);
// Operands of the epilogue kernels, shared by the CPU and CUDA entry points: the full tensors
// (for the convolutions) and their grouped (n, G*C, H, W) views (for the epilogue).
struct ForwardOperands {
  bool stacked;
  Tensor x_full, x, saved;
  std::vector<Tensor> zs_full, zs;
};
ForwardOperands forward_operands(const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7,
                                 ConvConfig cfg, int64_t groups, bool keep);
struct BackwardOperands {
  bool stacked;
  Tensor x_full, g_full, x, g;
  std::vector<Tensor> zs_full, gzs_full, zs, gzs;  // conv outputs and their gradient buffers
};
BackwardOperands backward_operands(const Tensor& grad_out, const Tensor& x_in, const Tensor& w3,
                                   const Tensor& w5, const Tensor& w7, const Tensor& saved, ConvConfig cfg,
                                   int64_t groups);
// Empty tensors when not needed. grads_z are laid out like mixed_convs' outputs; the gradients
// are returned in the dtypes of x and the kernels whatever cfg.dtype is.
std::tuple<Tensor, Tensor, Tensor, Tensor> mixed_convs_backward(
    const Tensor& x, const std::vector<Tensor>& grads_z, const Tensor& w3, const Tensor& w5,
    const Tensor& w7, const ConvConfig& cfg, bool need_input_grad, bool need_weight_grad);
// Buffers for grads_z with the same layout as mixed_convs(x, ..., stacked).
std::vector<Tensor> empty_like_convs(const std::vector<Tensor>& zs, bool stacked);

// ---- CPU
// Forward returns (out, mean, var, saved); bn parameters and statistics are (3, G*C) (tiled).
std::tuple<Tensor, Tensor, Tensor, Tensor> mixed_op_forward_cpu(
    const Tensor& x, const Tensor& w3, const Tensor& w5, const Tensor& w7, const Tensor& bn_weight,
    const Tensor& bn_bias, const Tensor& alpha, const Tensor& running_mean, const Tensor& running_var,
    bool training, double eps, bool stacked, bool channels_last, int64_t groups, bool keep,
    std::optional<at::ScalarType> conv_dtype);
MixedOpGrads mixed_op_backward_cpu(
    const Tensor& grad_out, const Tensor& x, const Tensor& w3, const Tensor& w5, const Tensor& w7,
    const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& alpha, const Tensor& mean,
    const Tensor& var, const Tensor& saved, bool training, double eps, bool stacked, bool channels_last,
    int64_t groups, bool need_input_grad, bool need_weight_grad, std::optional<at::ScalarType> conv_dtype);
// channels_last x (csrc/mixed_op_nhwc.cpp): the same op with the epilogue on NHWC tensors; out, grad x
// and saved ((3, N, C, H, W) stored (3, N, H, W, C)) come back channels_last.
bool is_nhwc(const Tensor& x);
std::tuple<Tensor, Tensor, Tensor, Tensor> mixed_op_forward_nhwc(
    const Tensor& x, const Tensor& w3, const Tensor& w5, const Tensor& w7, const Tensor& bn_weight,
    const Tensor& bn_bias, const Tensor& alpha, const Tensor& running_mean, const Tensor& running_var,
    bool training, double eps, int64_t groups, bool keep, std::optional<at::ScalarType> conv_dtype);
MixedOpGrads mixed_op_backward_nhwc(
    const Tensor& grad_out, const Tensor& x, const Tensor& w3, const Tensor& w5, const Tensor& w7,
    const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& alpha, const Tensor& mean,
    const Tensor& var, const Tensor& saved, bool training, double eps, int64_t groups, bool need_input_grad,
    bool need_weight_grad, std::optional<at::ScalarType> conv_dtype);
Tensor beta_aggregate_forward_cpu(at::TensorList inputs, const Tensor& beta, int64_t out_h, int64_t out_w);
std::vector<Tensor> beta_aggregate_backward_cpu(const Tensor& grad_out, at::TensorList inputs,
                                                const Tensor& beta, bool need_input_grad);

// Checks shared by the CPU and CUDA entry points.
void check_mixed_op_args(const Tensor& x, const Tensor& w3, const Tensor& w5, const Tensor& w7,
                         const Tensor& bn_weight, const Tensor& alpha, int64_t groups);
void check_beta_aggregate_args(at::TensorList inputs, const Tensor& beta);

// Hot CPU inner loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (the extension is built without -march, so it runs on any x86-64; GCC/Clang function multiversioning).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FRSENGINE_NO_SIMD_CLONES)
#define FRSENGINE_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FRSENGINE_SIMD_CLONES
#endif

// Grain of the CPU loops: a task gets at least this many elements, so small tensors run on the
// calling thread (an OpenMP fork/join costs more than they do, and far more when cores are shared).
constexpr int64_t kGrainElements = 32768;
inline int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, elements_per_item));
}

// Bilinear, align_corners=True source coordinate of output index `dst` (PyTorch's convention).
inline double align_corners_scale(int64_t in, int64_t out) {
  return out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
}

}  // namespace frsengine
