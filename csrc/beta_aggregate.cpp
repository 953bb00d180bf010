// Beta-weighted multi-scale aggregation on CPU: out = sum_i beta_i * bilinear(x_i) (align_corners=True).
// One task per (n, c) plane (at::parallel_for / OpenMP). Per plane, inputs are taken one after the
// other (the reference's summation order, so the rounding matches): an input that already has the
// node's size is a vectorised axpy, a resampled one a row-wise gather with precomputed taps. The
// backward reads the output gradient per input: grad beta_i = sum g * sample_i (recomputed) and
// beta_i * g scattered into grad x_i. A task owns its planes, so the scatter needs no atomics.
#include "frsengine_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace frsengine {
namespace {

constexpr int kMaxInputs = 3;

// Interpolation taps along one axis for every output index (weights computed in double).
template <typename T>
struct Axis {
  std::vector<int64_t> i0, i1;
  std::vector<T> l0, l1;
  Axis(int64_t in, int64_t out) : i0(out), i1(out), l0(out), l1(out) {
    const double scale = align_corners_scale(in, out);
    for (int64_t o = 0; o < out; ++o) {
      const double src = scale * static_cast<double>(o);
      const int64_t lo = std::min(static_cast<int64_t>(src), in - 1);
      i0[o] = lo;
      i1[o] = lo + (lo < in - 1 ? 1 : 0);
      l1[o] = static_cast<T>(src - static_cast<double>(lo));
      l0[o] = static_cast<T>(1.0 - (src - static_cast<double>(lo)));
    }
  }
};

template <typename T>
struct Source {
  int64_t h, w;
  bool identity;
  Axis<T> rows, cols;
  Source(int64_t h_, int64_t w_, int64_t out_h, int64_t out_w)
      : h(h_), w(w_), identity(h_ == out_h && w_ == out_w), rows(h_, out_h), cols(w_, out_w) {}
};

// Bilinear sample of output row `oh`, column `ow` (same expression as ATen's kernel).
template <typename T>
inline T sample(const T* p, const Source<T>& s, int64_t oh, int64_t ow) {
  const T lh0 = s.rows.l0[oh], lh1 = s.rows.l1[oh], lw0 = s.cols.l0[ow], lw1 = s.cols.l1[ow];
  const T* r0 = p + s.rows.i0[oh] * s.w;
  const T* r1 = p + s.rows.i1[oh] * s.w;
  const int64_t c0 = s.cols.i0[ow], c1 = s.cols.i1[ow];
  return lh0 * (lw0 * r0[c0] + lw1 * r0[c1]) + lh1 * (lw0 * r1[c0] + lw1 * r1[c1]);
}

// o = b * x (first input) or o += b * x, for an input at the node's size.
template <typename T>
__attribute__((noinline)) void axpy_plane(T* __restrict__ o, const T* __restrict__ x, T b, int64_t n, bool first) {
  if (first) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = b * x[i];
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = o[i] + b * x[i];
  }
}

// sum g * x in chunks of scalar_t (full-width SIMD), chunks added in double. (Pragmas cannot sit
// inside the AT_DISPATCH macro's argument, hence these helpers.)
template <typename T>
__attribute__((noinline)) double dot_plane(const T* __restrict__ g, const T* __restrict__ x, int64_t n) {
  double total = 0.0;
  for (int64_t i0 = 0; i0 < n; i0 += 256) {
    const int64_t i1 = std::min(n, i0 + 256);
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = i0; i < i1; ++i) acc += g[i] * x[i];
    total += acc;
  }
  return total;
}

template <typename T>
void resample_plane(T* o, const T* x, const Source<T>& s, T b, int64_t out_h, int64_t out_w, bool first) {
  for (int64_t oh = 0; oh < out_h; ++oh) {
    T* row = o + oh * out_w;
    for (int64_t ow = 0; ow < out_w; ++ow) {
      const T v = b * sample(x, s, oh, ow);
      row[ow] = first ? v : row[ow] + v;
    }
  }
}

}  // namespace

void check_beta_aggregate_args(at::TensorList inputs, const Tensor& beta) {
  TORCH_CHECK(!inputs.empty() && inputs.size() <= kMaxInputs, "beta_aggregate: 1..3 inputs, got ",
              inputs.size());
  TORCH_CHECK(beta.numel() == static_cast<int64_t>(inputs.size()), "beta_aggregate: one beta per input");
  for (const auto& x : inputs) {
    TORCH_CHECK(x.dim() == 4 && x.size(0) == inputs[0].size(0) && x.size(1) == inputs[0].size(1),
                "beta_aggregate: inputs must be (N, C, H, W) with shared N and C");
    TORCH_CHECK(x.scalar_type() == inputs[0].scalar_type(), "beta_aggregate: inputs must share a dtype");
  }
}

Tensor beta_aggregate_forward_cpu(at::TensorList inputs_in, const Tensor& beta, int64_t out_h, int64_t out_w) {
  check_beta_aggregate_args(inputs_in, beta);
  std::vector<Tensor> xs;
  for (const auto& x : inputs_in) xs.push_back(x.contiguous());
  const int64_t N = xs[0].size(0), C = xs[0].size(1), K = xs.size(), plane = out_h * out_w;
  Tensor out = at::empty({N, C, out_h, out_w}, xs[0].options());
  const Tensor b = beta.detach().to(at::kDouble).contiguous();
  AT_DISPATCH_FLOATING_TYPES(xs[0].scalar_type(), "beta_aggregate_forward_cpu", [&] {
    std::vector<Source<scalar_t>> src;
    for (const auto& x : xs) src.emplace_back(x.size(2), x.size(3), out_h, out_w);
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, N * C, grain_for(K * plane), [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        for (int64_t k = 0; k < K; ++k) {
          const Source<scalar_t>& s = src[k];
          const scalar_t* xp = xs[k].data_ptr<scalar_t>() + nc * s.h * s.w;
          const scalar_t bk = b.data_ptr<double>()[k];
          if (s.identity)
            axpy_plane(op + nc * plane, xp, bk, plane, k == 0);
          else
            resample_plane(op + nc * plane, xp, s, bk, out_h, out_w, k == 0);
        }
      }
    });
  });
  return out;
}

std::vector<Tensor> beta_aggregate_backward_cpu(const Tensor& grad_out, at::TensorList inputs_in,
                                                const Tensor& beta, bool need_input_grad) {
  check_beta_aggregate_args(inputs_in, beta);
  const Tensor g = grad_out.contiguous();
  const int64_t out_h = g.size(2), out_w = g.size(3), plane = out_h * out_w;
  std::vector<Tensor> xs, gxs;
  for (const auto& x : inputs_in) {
    xs.push_back(x.contiguous());
    if (need_input_grad) gxs.push_back(at::zeros_like(xs.back(), at::MemoryFormat::Contiguous));
  }
  const int64_t N = xs[0].size(0), C = xs[0].size(1), K = xs.size();
  const Tensor b = beta.detach().to(at::kDouble).contiguous();
  std::vector<double> partial(N * C * K, 0.0);  // per-plane grad beta, summed in a fixed order below
  AT_DISPATCH_FLOATING_TYPES(xs[0].scalar_type(), "beta_aggregate_backward_cpu", [&] {
    std::vector<Source<scalar_t>> src;
    for (const auto& x : xs) src.emplace_back(x.size(2), x.size(3), out_h, out_w);
    const scalar_t* gp = g.data_ptr<scalar_t>();
    at::parallel_for(0, N * C, grain_for(K * plane), [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const scalar_t* go = gp + nc * plane;
        for (int64_t k = 0; k < K; ++k) {
          const Source<scalar_t>& s = src[k];
          const scalar_t bk = b.data_ptr<double>()[k];
          const scalar_t* xp = xs[k].data_ptr<scalar_t>() + nc * s.h * s.w;
          scalar_t* gx = need_input_grad ? gxs[k].data_ptr<scalar_t>() + nc * s.h * s.w : nullptr;
          double acc = 0.0;
          if (s.identity) {
            acc = dot_plane(go, xp, plane);
            if (gx != nullptr) axpy_plane(gx, go, bk, plane, true);
          } else {
            for (int64_t oh = 0; oh < out_h; ++oh) {
              const scalar_t lh0 = s.rows.l0[oh], lh1 = s.rows.l1[oh];
              const int64_t r0 = s.rows.i0[oh] * s.w, r1 = s.rows.i1[oh] * s.w;
              for (int64_t ow = 0; ow < out_w; ++ow) {
                const scalar_t gv = go[oh * out_w + ow];
                acc += static_cast<double>(gv) * sample(xp, s, oh, ow);
                if (gx == nullptr) continue;
                const scalar_t bg = bk * gv, lw0 = s.cols.l0[ow], lw1 = s.cols.l1[ow];
                const int64_t c0 = s.cols.i0[ow], c1 = s.cols.i1[ow];
                gx[r0 + c0] += bg * lh0 * lw0;
                gx[r0 + c1] += bg * lh0 * lw1;
                gx[r1 + c0] += bg * lh1 * lw0;
                gx[r1 + c1] += bg * lh1 * lw1;
              }
            }
          }
          partial[nc * K + k] = acc;
        }
      }
    });
  });
  std::vector<double> gb(K, 0.0);
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t k = 0; k < K; ++k) gb[k] += partial[nc * K + k];
  gxs.push_back(at::tensor(gb, at::TensorOptions().dtype(at::kDouble)).view(beta.sizes()).to(beta.scalar_type()));
  return gxs;
}

}  // namespace frsengine
