// CUDA epilogue of the fused mixed op (the convolutions are ATen/cuDNN calls shared with the CPU
// path, csrc/mixed_op.cpp). Same passes and formulas as the CPU kernels:
//   forward: per-(branch, channel) mean/variance (training), then one elementwise epilogue;
//   backward: per-(branch, channel) reductions, then grad z for all three branches.
// Per-channel constants (scale, shift, invstd, means of the reductions) stay on the device: no
// host synchronisation between the passes.
#include "frsengine_ops.h"
#include "reduce.cuh"

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace frsengine {
namespace {

using cuda::block_sum;
using cuda::blocks_for;
using cuda::kThreads;

template <typename T>
struct Branches {
  T* z[3];
  int64_t batch_stride;  // plane (n, c) of branch k starts at z[k] + n * batch_stride + c * HW
};

template <typename T>
Branches<T> branches(const std::vector<Tensor>& zs, int64_t C, int64_t HW) {
  Branches<T> b;
  if (zs.size() == 1) {  // stacked (N, 3C, H, W)
    for (int k = 0; k < 3; ++k) b.z[k] = zs[0].data_ptr<T>() + k * C * HW;
    b.batch_stride = 3 * C * HW;
  } else {
    for (int k = 0; k < 3; ++k) b.z[k] = zs[k].data_ptr<T>();
    b.batch_stride = C * HW;
  }
  return b;
}

template <typename scalar_t, typename acc_t>
__global__ void channel_stats_kernel(Branches<scalar_t> z, int64_t N, int64_t C, int64_t HW, acc_t* mean,
                                     acc_t* var) {
  __shared__ acc_t shared[kThreads / 32];
  const int64_t kc = blockIdx.x, k = kc / C, c = kc % C;
  const scalar_t* base = z.z[k] + c * HW;
  const int64_t M = N * HW;
  acc_t s = 0;
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) s += base[(i / HW) * z.batch_stride + i % HW];
  const acc_t m = block_sum(s, shared) / static_cast<acc_t>(M);
  acc_t sq = 0;  // second pass around the mean: no E[z^2] - E[z]^2 cancellation
  for (int64_t i = threadIdx.x; i < M; i += blockDim.x) {
    const acc_t d = static_cast<acc_t>(base[(i / HW) * z.batch_stride + i % HW]) - m;
    sq += d * d;
  }
  const acc_t v = block_sum(sq, shared) / static_cast<acc_t>(M);
  if (threadIdx.x == 0) {
    mean[kc] = m;
    var[kc] = v;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void forward_epilogue_kernel(const scalar_t* x, Branches<scalar_t> z, const acc_t* scale,
                                        const acc_t* shift, const acc_t* a, int64_t C, int64_t HW,
                                        int64_t total, scalar_t* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t nc = i / HW, j = i % HW, n = nc / C, c = nc % C;
    const int64_t off = n * z.batch_stride + c * HW + j;
    acc_t o = a[0] * static_cast<acc_t>(x[i]);
#pragma unroll
    for (int k = 0; k < 3; ++k) {
      const acc_t y = static_cast<acc_t>(z.z[k][off]) * scale[k * C + c] + shift[k * C + c];
      o += a[k + 1] * (y > 0 ? y : acc_t(0));
    }
    out[i] = static_cast<scalar_t>(o);
  }
}

// One block per (branch k, channel c): sum g_y, sum g_y x_hat, sum g ReLU(y); sum g x for k == 0.
template <typename scalar_t, typename acc_t>
__global__ void backward_reduce_kernel(const scalar_t* g, const scalar_t* x, Branches<scalar_t> z,
                                       const acc_t* mean, const acc_t* invstd, const acc_t* scale,
                                       const acc_t* shift, const acc_t* a, int64_t N, int64_t C, int64_t HW,
                                       acc_t* sum_gy, acc_t* sum_gy_xhat, acc_t* sum_g_r, acc_t* sum_g_x) {
  __shared__ acc_t shared[kThreads / 32];
  const int64_t kc = blockIdx.x, k = kc / C, c = kc % C;
  const acc_t s = scale[kc], h = shift[kc], m = mean[kc], is = invstd[kc], ak = a[k + 1];
  acc_t s_gy = 0, s_gyx = 0, s_gr = 0, s_gx = 0;
  for (int64_t i = threadIdx.x; i < N * HW; i += blockDim.x) {
    const int64_t n = i / HW, j = i % HW;
    const acc_t gv = g[(n * C + c) * HW + j];
    const acc_t zv = z.z[k][n * z.batch_stride + c * HW + j];
    const acc_t y = zv * s + h;
    if (y > 0) {
      s_gy += ak * gv;
      s_gyx += ak * gv * (zv - m) * is;
      s_gr += gv * y;
    }
    if (k == 0) s_gx += gv * static_cast<acc_t>(x[(n * C + c) * HW + j]);
  }
  s_gy = block_sum(s_gy, shared);
  s_gyx = block_sum(s_gyx, shared);
  s_gr = block_sum(s_gr, shared);
  if (k == 0) s_gx = block_sum(s_gx, shared);  // uniform per block: no divergent __syncthreads
  if (threadIdx.x == 0) {
    sum_gy[kc] = s_gy;
    sum_gy_xhat[kc] = s_gyx;
    sum_g_r[kc] = s_gr;
    if (k == 0) sum_g_x[c] = s_gx;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_grad_z_kernel(const scalar_t* g, Branches<scalar_t> z, Branches<scalar_t> gz,
                                       const acc_t* mean, const acc_t* invstd, const acc_t* scale,
                                       const acc_t* shift, const acc_t* a, const acc_t* mgy, const acc_t* mgyx,
                                       int64_t C, int64_t HW, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t nc = i / HW, j = i % HW, n = nc / C, c = nc % C;
    const int64_t off = n * z.batch_stride + c * HW + j;
    const acc_t gv = g[i];
#pragma unroll
    for (int k = 0; k < 3; ++k) {
      const int64_t kc = k * C + c;
      const acc_t zv = z.z[k][off];
      const acc_t y = zv * scale[kc] + shift[kc];
      const acc_t gy = y > 0 ? a[k + 1] * gv : acc_t(0);
      gz.z[k][off] = static_cast<scalar_t>(scale[kc] * (gy - mgy[kc] - (zv - mean[kc]) * invstd[kc] * mgyx[kc]));
    }
  }
}

// Groups and keep: see csrc/mixed_op.cpp (the epilogue runs on the (n, G*C, H, W) view).
std::tuple<Tensor, Tensor, Tensor, Tensor> mixed_op_forward_cuda(
    const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7, const Tensor& bn_weight,
    const Tensor& bn_bias, const Tensor& alpha, const Tensor& running_mean, const Tensor& running_var,
    bool training, double eps, bool stacked, bool channels_last, int64_t groups, bool keep,
    std::optional<at::ScalarType> conv_dtype) {
  check_mixed_op_args(x_in, w3, w5, w7, bn_weight, alpha, groups);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const ForwardOperands ops =
      forward_operands(x_in, w3, w5, w7, ConvConfig{stacked, channels_last, conv_dtype}, groups, keep);
  const Tensor &x_full = ops.x_full, &x = ops.x, &saved = ops.saved;
  const std::vector<Tensor>& zs = ops.zs;
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  Tensor mean, var;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixed_op_forward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto acc_opts = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
    if (training) {
      mean = at::empty({3, C}, acc_opts);
      var = at::empty({3, C}, acc_opts);
      channel_stats_kernel<scalar_t, acc_t><<<3 * C, kThreads, 0, stream>>>(
          branches<scalar_t>(zs, C, HW), N, C, HW, mean.data_ptr<acc_t>(), var.data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      mean = running_mean.to(acc_opts.dtype()).contiguous();
      var = running_var.to(acc_opts.dtype()).contiguous();
    }
    const Tensor scale = (bn_weight.to(acc_opts.dtype()) * (var + eps).rsqrt()).contiguous();
    const Tensor shift = (bn_bias.to(acc_opts.dtype()) - mean * scale).contiguous();
    const Tensor a = alpha.to(acc_opts.dtype()).contiguous();
    const int64_t total = x.numel();
    forward_epilogue_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), branches<scalar_t>(zs, C, HW), scale.data_ptr<acc_t>(), shift.data_ptr<acc_t>(),
        a.data_ptr<acc_t>(), C, HW, total, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  // to() copies (never aliases the running statistics, as the op contract requires).
  return {out.view(x_full.sizes()), mean.to(bn_weight.scalar_type(), false, true),
          var.to(bn_weight.scalar_type(), false, true), saved};
}

MixedOpGrads mixed_op_backward_cuda(
    const Tensor& grad_out, const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7,
    const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& alpha, const Tensor& mean_in,
    const Tensor& var_in, const Tensor& saved, bool training, double eps, bool stacked, bool channels_last,
    int64_t groups, bool need_input_grad, bool need_weight_grad, std::optional<at::ScalarType> conv_dtype) {
  check_mixed_op_args(x_in, w3, w5, w7, bn_weight, alpha, groups);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const BackwardOperands ops =
      backward_operands(grad_out, x_in, w3, w5, w7, saved, ConvConfig{stacked, channels_last, conv_dtype}, groups);
  const Tensor &x_full = ops.x_full, &g_full = ops.g_full, &x = ops.x, &g = ops.g;
  const std::vector<Tensor> &zs = ops.zs, &gzs = ops.gzs;
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  Tensor sum_gy, sum_gyx, sum_gr, sum_gx;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixed_op_backward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto acc = c10::CppTypeToScalarType<acc_t>::value;
    const Tensor mean = mean_in.to(acc).contiguous(), var = var_in.to(acc).contiguous();
    const Tensor invstd = (var + eps).rsqrt().contiguous();
    const Tensor scale = (bn_weight.to(acc) * invstd).contiguous();
    const Tensor shift = (bn_bias.to(acc) - mean * scale).contiguous();
    const Tensor a = alpha.to(acc).contiguous();
    sum_gy = at::empty({3, C}, x.options().dtype(acc));
    sum_gyx = at::empty_like(sum_gy);
    sum_gr = at::empty_like(sum_gy);
    sum_gx = at::empty({C}, x.options().dtype(acc));
    const Branches<scalar_t> z = branches<scalar_t>(zs, C, HW);
    backward_reduce_kernel<scalar_t, acc_t><<<3 * C, kThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), z, mean.data_ptr<acc_t>(), invstd.data_ptr<acc_t>(),
        scale.data_ptr<acc_t>(), shift.data_ptr<acc_t>(), a.data_ptr<acc_t>(), N, C, HW, sum_gy.data_ptr<acc_t>(),
        sum_gyx.data_ptr<acc_t>(), sum_gr.data_ptr<acc_t>(), sum_gx.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const double count = static_cast<double>(N * HW);
    const Tensor mgy = training ? (sum_gy / count).contiguous() : at::zeros_like(sum_gy);
    const Tensor mgyx = training ? (sum_gyx / count).contiguous() : at::zeros_like(sum_gyx);
    const int64_t total = x.numel();
    backward_grad_z_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), z, branches<scalar_t>(gzs, C, HW), mean.data_ptr<acc_t>(), invstd.data_ptr<acc_t>(),
        scale.data_ptr<acc_t>(), shift.data_ptr<acc_t>(), a.data_ptr<acc_t>(), mgy.data_ptr<acc_t>(),
        mgyx.data_ptr<acc_t>(), C, HW, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  auto [gx, gw3, gw5, gw7] = mixed_convs_backward(x_full, ops.gzs_full, w3, w5, w7,
                                                  ConvConfig{ops.stacked, channels_last, conv_dtype},
                                                  need_input_grad, need_weight_grad);
  if (need_input_grad) gx.add_(g_full * alpha[0].to(g_full.scalar_type()));
  Tensor g_alpha = at::cat({sum_gx.sum().reshape({1}), sum_gr.sum(1)}).to(alpha.scalar_type()).view(alpha.sizes());
  return {gx, gw3, gw5, gw7, sum_gyx.to(bn_weight.scalar_type()), sum_gy.to(bn_bias.scalar_type()), g_alpha};
}

}  // namespace
}  // namespace frsengine

TORCH_LIBRARY_IMPL(frsengine_native, CUDA, m) {
  m.impl("mixed_op_forward", &frsengine::mixed_op_forward_cuda);
  m.impl("mixed_op_backward", &frsengine::mixed_op_backward_cuda);
}
