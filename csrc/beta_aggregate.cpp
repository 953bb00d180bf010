// Beta-weighted multi-scale aggregation on CPU: out = sum_i beta_i * bilinear(x_i) (align_corners=True).
// One task per (n, c) plane (at::parallel_for / OpenMP): the forward gathers from up to three
// inputs and writes the output once; the backward reads each output-gradient element once,
// recomputes the interpolated value for grad beta and scatters beta_i * g into grad x_i. A task
// owns its planes, so the scatter needs no atomics.
#include "frsengine_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace frsengine {
namespace {

constexpr int kMaxInputs = 3;

// Interpolation taps along one axis for every output index.
struct Axis {
  std::vector<int64_t> i0, i1;
  std::vector<double> l0, l1;
  bool identity = false;
  Axis(int64_t in, int64_t out) : i0(out), i1(out), l0(out), l1(out), identity(in == out) {
    const double scale = align_corners_scale(in, out);
    for (int64_t o = 0; o < out; ++o) {
      const double src = scale * static_cast<double>(o);
      const int64_t lo = std::min(static_cast<int64_t>(src), in - 1);
      i0[o] = lo;
      i1[o] = lo + (lo < in - 1 ? 1 : 0);
      l1[o] = src - static_cast<double>(lo);
      l0[o] = 1.0 - l1[o];
    }
  }
};

struct Source {
  int64_t h, w;
  Axis rows, cols;
  Source(int64_t h_, int64_t w_, int64_t out_h, int64_t out_w)
      : h(h_), w(w_), rows(h_, out_h), cols(w_, out_w) {}
  bool identity() const { return rows.identity && cols.identity; }
};

template <typename scalar_t>
inline scalar_t sample(const scalar_t* p, const Source& s, int64_t oh, int64_t ow) {
  if (s.identity()) return p[oh * s.w + ow];
  const scalar_t lh0 = s.rows.l0[oh], lh1 = s.rows.l1[oh], lw0 = s.cols.l0[ow], lw1 = s.cols.l1[ow];
  const scalar_t* r0 = p + s.rows.i0[oh] * s.w;
  const scalar_t* r1 = p + s.rows.i1[oh] * s.w;
  const int64_t c0 = s.cols.i0[ow], c1 = s.cols.i1[ow];
  return lh0 * (lw0 * r0[c0] + lw1 * r0[c1]) + lh1 * (lw0 * r1[c0] + lw1 * r1[c1]);
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
  std::vector<Source> src;
  for (const auto& x : inputs_in) {
    xs.push_back(x.contiguous());
    src.emplace_back(x.size(2), x.size(3), out_h, out_w);
  }
  const int64_t N = xs[0].size(0), C = xs[0].size(1), K = xs.size();
  Tensor out = at::empty({N, C, out_h, out_w}, xs[0].options());
  const Tensor b = beta.detach().to(at::kDouble).contiguous();
  AT_DISPATCH_FLOATING_TYPES(xs[0].scalar_type(), "beta_aggregate_forward_cpu", [&] {
    scalar_t bk[kMaxInputs];
    const scalar_t* xp[kMaxInputs];
    for (int64_t k = 0; k < K; ++k) {
      bk[k] = b.data_ptr<double>()[k];
      xp[k] = xs[k].data_ptr<scalar_t>();
    }
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, N * C, grain_for(K * out_h * out_w), [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const scalar_t* planes[kMaxInputs];
        for (int64_t k = 0; k < K; ++k) planes[k] = xp[k] + nc * src[k].h * src[k].w;
        scalar_t* o = op + nc * out_h * out_w;
        for (int64_t oh = 0; oh < out_h; ++oh)
          for (int64_t ow = 0; ow < out_w; ++ow) {
            // Reference order: (b0 x0 + b1 x1) + b2 x2.
            scalar_t acc = bk[0] * sample(planes[0], src[0], oh, ow);
            for (int64_t k = 1; k < K; ++k) acc = acc + bk[k] * sample(planes[k], src[k], oh, ow);
            o[oh * out_w + ow] = acc;
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
  const int64_t out_h = g.size(2), out_w = g.size(3);
  std::vector<Tensor> xs, gxs;
  std::vector<Source> src;
  for (const auto& x : inputs_in) {
    xs.push_back(x.contiguous());
    src.emplace_back(x.size(2), x.size(3), out_h, out_w);
    if (need_input_grad) gxs.push_back(at::zeros_like(xs.back(), at::MemoryFormat::Contiguous));
  }
  const int64_t N = xs[0].size(0), C = xs[0].size(1), K = xs.size();
  const Tensor b = beta.detach().to(at::kDouble).contiguous();
  std::vector<double> partial(N * C * K, 0.0);  // per-plane grad beta, summed in a fixed order below
  AT_DISPATCH_FLOATING_TYPES(xs[0].scalar_type(), "beta_aggregate_backward_cpu", [&] {
    scalar_t bk[kMaxInputs];
    for (int64_t k = 0; k < K; ++k) bk[k] = b.data_ptr<double>()[k];
    const scalar_t* gp = g.data_ptr<scalar_t>();
    at::parallel_for(0, N * C, grain_for(K * out_h * out_w), [&](int64_t begin, int64_t end) {
      for (int64_t nc = begin; nc < end; ++nc) {
        const scalar_t* go = gp + nc * out_h * out_w;
        for (int64_t k = 0; k < K; ++k) {
          const Source& s = src[k];
          const scalar_t* xp = xs[k].data_ptr<scalar_t>() + nc * s.h * s.w;
          scalar_t* gx = need_input_grad ? gxs[k].data_ptr<scalar_t>() + nc * s.h * s.w : nullptr;
          double acc = 0.0;
          for (int64_t oh = 0; oh < out_h; ++oh) {
            const scalar_t lh0 = s.rows.l0[oh], lh1 = s.rows.l1[oh];
            const int64_t r0 = s.rows.i0[oh] * s.w, r1 = s.rows.i1[oh] * s.w;
            for (int64_t ow = 0; ow < out_w; ++ow) {
              const scalar_t gv = go[oh * out_w + ow];
              acc += static_cast<double>(gv) * sample(xp, s, oh, ow);
              if (gx == nullptr) continue;
              const scalar_t bg = bk[k] * gv;
              if (s.identity()) {
                gx[oh * s.w + ow] += bg;
                continue;
              }
              const scalar_t lw0 = s.cols.l0[ow], lw1 = s.cols.l1[ow];
              const int64_t c0 = s.cols.i0[ow], c1 = s.cols.i1[ow];
              gx[r0 + c0] += bg * lh0 * lw0;
              gx[r0 + c1] += bg * lh0 * lw1;
              gx[r1 + c0] += bg * lh1 * lw0;
              gx[r1 + c1] += bg * lh1 * lw1;
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
