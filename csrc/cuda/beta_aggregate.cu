// CUDA beta-weighted aggregation: one thread per output element. Forward gathers the bilinear taps
// (align_corners=True) of up to three inputs and writes sum_i beta_i * sample_i once. Backward
// recomputes sample_i for grad beta (block sums, one atomic add per block and input) and scatters
// beta_i * g into grad x_i with atomic adds (neighbouring outputs share taps), as ATen's
// upsample_bilinear2d_backward does.
#include "frsengine_ops.h"
#include "reduce.cuh"

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/cuda/Atomic.cuh>
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
struct Source {
  T* x;  // input (forward) or its gradient (backward scatter)
  int64_t h, w;
  float scale_h, scale_w;
};

template <typename T>
struct Sources {
  Source<T> s[3];
  int k;  // how many are real
};

struct Taps {
  int64_t h0, h1, w0, w1;
  float lh, lw;
};

template <typename T>
__device__ inline Taps taps(const Source<T>& s, int64_t oh, int64_t ow) {
  // fp32 source coordinates, as ATen's kernel for float inputs.
  const float sh = s.scale_h * oh, sw = s.scale_w * ow;
  Taps t;
  t.h0 = static_cast<int64_t>(sh);
  t.w0 = static_cast<int64_t>(sw);
  t.h1 = t.h0 + (t.h0 < s.h - 1 ? 1 : 0);
  t.w1 = t.w0 + (t.w0 < s.w - 1 ? 1 : 0);
  t.lh = sh - t.h0;
  t.lw = sw - t.w0;
  return t;
}

template <typename scalar_t, typename acc_t>
__device__ inline acc_t sample(const Source<const scalar_t>& s, int64_t plane, int64_t oh, int64_t ow) {
  const Taps t = taps(s, oh, ow);
  const scalar_t* p = s.x + plane * s.h * s.w;
  const acc_t lh0 = 1 - t.lh, lw0 = 1 - t.lw;
  return lh0 * (lw0 * static_cast<acc_t>(p[t.h0 * s.w + t.w0]) + t.lw * static_cast<acc_t>(p[t.h0 * s.w + t.w1])) +
         t.lh * (lw0 * static_cast<acc_t>(p[t.h1 * s.w + t.w0]) + t.lw * static_cast<acc_t>(p[t.h1 * s.w + t.w1]));
}

template <typename scalar_t, typename acc_t>
__global__ void aggregate_forward_kernel(Sources<const scalar_t> src, const acc_t* beta, int64_t out_h,
                                         int64_t out_w, int64_t total, scalar_t* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = i / (out_h * out_w), o = i % (out_h * out_w), oh = o / out_w, ow = o % out_w;
    acc_t acc = beta[0] * sample<scalar_t, acc_t>(src.s[0], plane, oh, ow);
    for (int k = 1; k < src.k; ++k) acc += beta[k] * sample<scalar_t, acc_t>(src.s[k], plane, oh, ow);
    out[i] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void aggregate_backward_kernel(const scalar_t* g, Sources<const scalar_t> src, Sources<scalar_t> grad,
                                          const acc_t* beta, bool need_input_grad, int64_t out_h, int64_t out_w,
                                          int64_t total, acc_t* grad_beta) {
  __shared__ acc_t shared[kThreads / 32];
  acc_t partial[3] = {0, 0, 0};
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = i / (out_h * out_w), o = i % (out_h * out_w), oh = o / out_w, ow = o % out_w;
    const acc_t gv = g[i];
    for (int k = 0; k < src.k; ++k) {
      partial[k] += gv * sample<scalar_t, acc_t>(src.s[k], plane, oh, ow);
      if (!need_input_grad) continue;
      const Source<scalar_t>& d = grad.s[k];
      const Taps t = taps(d, oh, ow);
      scalar_t* p = d.x + plane * d.h * d.w;
      const acc_t bg = beta[k] * gv, lh0 = 1 - t.lh, lw0 = 1 - t.lw;
      gpuAtomicAdd(p + t.h0 * d.w + t.w0, static_cast<scalar_t>(bg * lh0 * lw0));
      gpuAtomicAdd(p + t.h0 * d.w + t.w1, static_cast<scalar_t>(bg * lh0 * t.lw));
      gpuAtomicAdd(p + t.h1 * d.w + t.w0, static_cast<scalar_t>(bg * t.lh * lw0));
      gpuAtomicAdd(p + t.h1 * d.w + t.w1, static_cast<scalar_t>(bg * t.lh * t.lw));
    }
  }
  for (int k = 0; k < src.k; ++k) {  // src.k is uniform: every thread reaches each block_sum
    const acc_t s = block_sum(partial[k], shared);
    if (threadIdx.x == 0) gpuAtomicAdd(grad_beta + k, s);
  }
}

float scale_of(int64_t in, int64_t out) { return static_cast<float>(align_corners_scale(in, out)); }

template <typename T>
Sources<T> sources(const std::vector<Tensor>& xs, int64_t out_h, int64_t out_w) {
  Sources<T> s{};
  s.k = static_cast<int>(xs.size());
  for (int k = 0; k < s.k; ++k)
    s.s[k] = {xs[k].data_ptr<std::remove_const_t<T>>(), xs[k].size(2), xs[k].size(3),
              scale_of(xs[k].size(2), out_h), scale_of(xs[k].size(3), out_w)};
  return s;
}

Tensor beta_aggregate_forward_cuda(at::TensorList inputs, const Tensor& beta, int64_t out_h, int64_t out_w) {
  check_beta_aggregate_args(inputs, beta);
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  std::vector<Tensor> xs;
  for (const auto& x : inputs) xs.push_back(x.contiguous());
  Tensor out = at::empty({xs[0].size(0), xs[0].size(1), out_h, out_w}, xs[0].options());
  AT_DISPATCH_FLOATING_TYPES(xs[0].scalar_type(), "beta_aggregate_forward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const Tensor b = beta.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    const int64_t total = out.numel();
    aggregate_forward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        sources<const scalar_t>(xs, out_h, out_w), b.data_ptr<acc_t>(), out_h, out_w, total,
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::vector<Tensor> beta_aggregate_backward_cuda(const Tensor& grad_out, at::TensorList inputs, const Tensor& beta,
                                                 bool need_input_grad) {
  check_beta_aggregate_args(inputs, beta);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const Tensor g = grad_out.contiguous();
  const int64_t out_h = g.size(2), out_w = g.size(3);
  std::vector<Tensor> xs, gxs;
  for (const auto& x : inputs) {
    xs.push_back(x.contiguous());
    gxs.push_back(need_input_grad ? at::zeros_like(xs.back(), at::MemoryFormat::Contiguous) : xs.back());
  }
  Tensor grad_beta;
  AT_DISPATCH_FLOATING_TYPES(xs[0].scalar_type(), "beta_aggregate_backward_cuda", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto acc = c10::CppTypeToScalarType<acc_t>::value;
    const Tensor b = beta.to(acc).contiguous();
    grad_beta = at::zeros({static_cast<int64_t>(xs.size())}, g.options().dtype(acc));
    const int64_t total = g.numel();
    aggregate_backward_kernel<scalar_t, acc_t><<<blocks_for(total), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        g.data_ptr<scalar_t>(), sources<const scalar_t>(xs, out_h, out_w), sources<scalar_t>(gxs, out_h, out_w),
        b.data_ptr<acc_t>(), need_input_grad, out_h, out_w, total, grad_beta.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  std::vector<Tensor> result = need_input_grad ? gxs : std::vector<Tensor>{};
  result.push_back(grad_beta.to(beta.scalar_type()).view(beta.sizes()));
  return result;
}

}  // namespace
}  // namespace frsengine

TORCH_LIBRARY_IMPL(frsengine_native, CUDA, m) {
  m.impl("beta_aggregate_forward", &frsengine::beta_aggregate_forward_cuda);
  m.impl("beta_aggregate_backward", &frsengine::beta_aggregate_backward_cuda);
}
