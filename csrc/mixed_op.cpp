// Fused mixed op: the convolution part (ATen, any device) and the CPU epilogue (OpenMP through
// at::parallel_for, which uses the OpenMP runtime torch itself was built with).
//
// Forward: z_k = conv_k(x) for k = 3, 5, 7 (one stacked 7x7 convolution or three), then
//   pass 1 (training): per-channel mean and biased variance of every z_k, two-pass, double sums;
//   pass 2: out = a_0 x + sum_k a_k max(0, z_k * scale_k + shift_k), scale = gamma * invstd,
//           shift = beta - mean * scale (ATen's BatchNorm form).
// Groups: x is (G*n, C, H, W) with groups interleaved along the batch (index i*G + g), so the
// contiguous conv outputs read as (n, G*C, H, W) hold one channel per (group, channel): the
// epilogue below runs unchanged on that view with C' = G*C (BN parameters arrive tiled).
// Convolutions may run on a channels_last copy of x (faster in oneDNN at small C); their outputs
// are made contiguous for the epilogue. A channels_last x runs in mixed_op_nhwc.cpp instead.
// Backward recomputes z_k from x (nothing but x, parameters and (3, C) statistics is saved), or
// reads them from `saved` when the forward ran with keep = true:
//   pass 1: per channel sum g_y, sum g_y x_hat (= grad beta, grad gamma) and the alpha reductions;
//   pass 2: grad z_k; then ATen's convolution backward gives grad x and the kernel grads.
#include "frsengine_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace frsengine {
namespace {

constexpr int64_t kChunk = 256;

// Pointer to plane (n, c) of branch k, for both layouts of mixed_convs' outputs.
template <typename T>
struct Branches {
  T* base[3];
  int64_t batch_stride;
  int64_t hw;
  Branches(const std::vector<Tensor>& zs, int64_t C, int64_t HW) : hw(HW) {
    if (zs.size() == 1) {  // stacked: (N, 3C, H, W)
      for (int k = 0; k < 3; ++k) base[k] = zs[0].data_ptr<T>() + k * C * HW;
      batch_stride = 3 * C * HW;
    } else {
      for (int k = 0; k < 3; ++k) base[k] = zs[k].data_ptr<T>();
      batch_stride = C * HW;
    }
  }
  T* plane(int k, int64_t n, int64_t c) const { return base[k] + n * batch_stride + c * hw; }
};

Tensor stacked_weight(const Tensor& w3, const Tensor& w5, const Tensor& w7) {
  return at::cat({at::constant_pad_nd(w3, {2, 2, 2, 2}), at::constant_pad_nd(w5, {1, 1, 1, 1}), w7}, 0);
}

template <typename scalar_t>
void batch_stats(const Branches<scalar_t>& z, int64_t N, int64_t C, double* mean, double* var) {
  const int64_t HW = z.hw;
  const double count = static_cast<double>(N * HW);
  at::parallel_for(0, 3 * C, grain_for(2 * N * HW), [&](int64_t begin, int64_t end) {
    for (int64_t kc = begin; kc < end; ++kc) {
      const int k = static_cast<int>(kc / C);
      const int64_t c = kc % C;
      double sum = 0.0;  // chunked scalar_t sums added in double, as in backward_reduce
      for (int64_t n = 0; n < N; ++n) {
        const scalar_t* p = z.plane(k, n, c);
        for (int64_t i0 = 0; i0 < HW; i0 += kChunk) {
          const int64_t i1 = std::min(HW, i0 + kChunk);
          scalar_t acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t i = i0; i < i1; ++i) acc += p[i];
          sum += acc;
        }
      }
      const double m = sum / count;
      // Second pass around the mean: no cancellation from E[z^2] - E[z]^2.
      const scalar_t mf = static_cast<scalar_t>(m);
      double sq = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const scalar_t* p = z.plane(k, n, c);
        for (int64_t i0 = 0; i0 < HW; i0 += kChunk) {
          const int64_t i1 = std::min(HW, i0 + kChunk);
          scalar_t acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t i = i0; i < i1; ++i) {
            const scalar_t d = p[i] - mf;
            acc += d * d;
          }
          sq += acc;
        }
      }
      // Exact correction for rounding m to scalar_t: sum (z - m)^2 = sum (z - mf)^2 - M (m - mf)^2.
      sq -= count * (m - mf) * (m - mf);
      mean[kc] = m;
      var[kc] = sq / count;
    }
  });
}

template <typename scalar_t>
void forward_epilogue(const scalar_t* x, const Branches<scalar_t>& z, const double* scale,
                      const double* shift, const double* a, int64_t N, int64_t C, scalar_t* out) {
  const int64_t HW = z.hw;
  at::parallel_for(0, N * C, grain_for(4 * HW), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / C, c = nc % C;
      const scalar_t *z0 = z.plane(0, n, c), *z1 = z.plane(1, n, c), *z2 = z.plane(2, n, c);
      const scalar_t* xp = x + nc * HW;
      scalar_t* op = out + nc * HW;
      const scalar_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
      const scalar_t s0 = scale[c], s1 = scale[C + c], s2 = scale[2 * C + c];
      const scalar_t h0 = shift[c], h1 = shift[C + c], h2 = shift[2 * C + c];
#pragma omp simd
      for (int64_t i = 0; i < HW; ++i) {
        const scalar_t y0 = z0[i] * s0 + h0, y1 = z1[i] * s1 + h1, y2 = z2[i] * s2 + h2;
        // Same summation order as the reference: ((a0 x + a1 r3) + a2 r5) + a3 r7.
        op[i] = a0 * xp[i] + a1 * std::max(y0, scalar_t(0)) + a2 * std::max(y1, scalar_t(0)) +
                a3 * std::max(y2, scalar_t(0));
      }
    }
  });
}

// The per-plane inner loops of the backward live in their own non-inlined functions with restrict
// pointers: inlined into the parallel_for lambdas GCC turned the ReLU mask into a branch (a
// mispredicted one per element, 10x slower); compiled alone they vectorise.
template <typename T>
__attribute__((noinline)) void reduce_plane(const T* __restrict__ gp, const T* __restrict__ zp, int64_t HW, T s,
                                            T h, T m, T is, T ak, double& s_gy, double& s_gyx, double& s_gr) {
  for (int64_t i0 = 0; i0 < HW; i0 += kChunk) {
    const int64_t i1 = std::min(HW, i0 + kChunk);
    T a_gy = 0, a_gyx = 0, a_gr = 0;
#pragma omp simd reduction(+ : a_gy, a_gyx, a_gr)
    for (int64_t i = i0; i < i1; ++i) {
      const T y = zp[i] * s + h;
      const T gy = ak * gp[i] * (y > 0 ? T(1) : T(0));  // select of constants: if-convertible
      a_gy += gy;
      a_gyx += gy * ((zp[i] - m) * is);
      a_gr += gp[i] * std::max(y, T(0));
    }
    s_gy += a_gy;
    s_gyx += a_gyx;
    s_gr += a_gr;
  }
}

template <typename T>
__attribute__((noinline)) void grad_z_plane(const T* __restrict__ gp, const T* __restrict__ zp, T* __restrict__ out,
                                            int64_t HW, T s, T h, T m, T is, T ak, T mgy, T mgyx) {
#pragma omp simd
  for (int64_t i = 0; i < HW; ++i) {
    const T y = zp[i] * s + h;
    const T gy = ak * gp[i] * (y > 0 ? T(1) : T(0));
    out[i] = s * (gy - mgy - (zp[i] - m) * is * mgyx);
  }
}

// Pass 1 of the backward, per channel c (all three branches): sums of g_y, g_y x_hat, g r_k, g x.
template <typename scalar_t>
void backward_reduce(const scalar_t* g, const scalar_t* x, const Branches<scalar_t>& z,
                     const double* mean, const double* invstd, const double* scale, const double* shift,
                     const double* a, int64_t N, int64_t C, double* sum_gy, double* sum_gy_xhat,
                     double* sum_g_r /* (3, C) */, double* sum_g_x /* (C) */) {
  const int64_t HW = z.hw;
  at::parallel_for(0, C, grain_for(4 * N * HW), [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      // Sums run in scalar_t over chunks of kChunk elements (full-width SIMD), chunks are added in
      // double: float rounding stays that of a kChunk-term sum, whatever N * H * W is.
      double gx_acc = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const scalar_t* gp = g + (n * C + c) * HW;
        const scalar_t* xp = x + (n * C + c) * HW;
        for (int64_t i0 = 0; i0 < HW; i0 += kChunk) {
          const int64_t i1 = std::min(HW, i0 + kChunk);
          scalar_t acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int64_t i = i0; i < i1; ++i) acc += gp[i] * xp[i];
          gx_acc += acc;
        }
      }
      sum_g_x[c] = gx_acc;
      for (int k = 0; k < 3; ++k) {
        const int64_t kc = k * C + c;
        const scalar_t s = scale[kc], h = shift[kc], m = mean[kc], is = invstd[kc], ak = a[k + 1];
        double s_gy = 0.0, s_gyx = 0.0, s_gr = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          const scalar_t* gp = g + (n * C + c) * HW;
          const scalar_t* zp = z.plane(k, n, c);
          reduce_plane(gp, zp, HW, s, h, m, is, ak, s_gy, s_gyx, s_gr);
        }
        sum_gy[kc] = s_gy;
        sum_gy_xhat[kc] = s_gyx;
        sum_g_r[kc] = s_gr;
      }
    }
  });
}

// Pass 2: grad z_k = scale (g_y - sum g_y / M - x_hat sum g_y x_hat / M) (training) or scale g_y.
template <typename scalar_t>
void backward_grad_z(const scalar_t* g, const Branches<scalar_t>& z, const Branches<scalar_t>& gz,
                     const double* mean, const double* invstd, const double* scale, const double* shift,
                     const double* a, const double* sum_gy, const double* sum_gy_xhat, bool training,
                     int64_t N, int64_t C) {
  const int64_t HW = z.hw;
  const double count = static_cast<double>(N * HW);
  at::parallel_for(0, N * C, grain_for(4 * HW), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; ++nc) {
      const int64_t n = nc / C, c = nc % C;
      const scalar_t* gp = g + nc * HW;
      for (int k = 0; k < 3; ++k) {
        const int64_t kc = k * C + c;
        const scalar_t s = scale[kc], h = shift[kc], m = mean[kc], is = invstd[kc], ak = a[k + 1];
        const scalar_t mgy = training ? sum_gy[kc] / count : 0.0;
        const scalar_t mgyx = training ? sum_gy_xhat[kc] / count : 0.0;
        const scalar_t* zp = z.plane(k, n, c);
        scalar_t* out = gz.plane(k, n, c);
        grad_z_plane(gp, zp, out, HW, s, h, m, is, ak, mgy, mgyx);
      }
    }
  });
}

}  // namespace

std::vector<double> to_doubles(const Tensor& t) {
  Tensor c = t.detach().to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

BnAffine bn_affine(const Tensor& gamma_t, const Tensor& beta_t, const std::vector<double>& mean,
                   const std::vector<double>& var, double eps) {
  const std::vector<double> gamma = to_doubles(gamma_t), beta = to_doubles(beta_t);
  BnAffine f{std::vector<double>(mean.size()), std::vector<double>(mean.size()), std::vector<double>(mean.size())};
  for (size_t i = 0; i < mean.size(); ++i) {
    f.invstd[i] = 1.0 / std::sqrt(var[i] + eps);
    f.scale[i] = gamma[i] * f.invstd[i];
    f.shift[i] = beta[i] - mean[i] * f.scale[i];
  }
  return f;
}

void check_mixed_op_args(const Tensor& x, const Tensor& w3, const Tensor& w5, const Tensor& w7,
                         const Tensor& bn_weight, const Tensor& alpha, int64_t groups) {
  TORCH_CHECK(x.dim() == 4, "mixed_op: x must be (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(groups >= 1 && x.size(0) % groups == 0, "mixed_op: batch ", x.size(0),
              " is not a multiple of groups = ", groups);
  const int64_t C = x.size(1);
  const Tensor* ws[3] = {&w3, &w5, &w7};
  for (int k = 0; k < 3; ++k) {
    TORCH_CHECK(ws[k]->sizes() == at::IntArrayRef({C, C, kKernelSizes[k], kKernelSizes[k]}), "mixed_op: weight ", k,
                " must be (C, C, ", kKernelSizes[k], ", ", kKernelSizes[k], "), got ", ws[k]->sizes());
    TORCH_CHECK(ws[k]->scalar_type() == x.scalar_type(), "mixed_op: dtypes of x and weights differ");
  }
  TORCH_CHECK(bn_weight.sizes() == at::IntArrayRef({3, groups * C}), "mixed_op: bn params must be (3, G*C)");
  TORCH_CHECK(alpha.numel() == 4, "mixed_op: alpha must hold 4 weights (skip, 3x3, 5x5, 7x7)");
}

Tensor grouped_view(const Tensor& t, int64_t groups) {
  return t.view({t.size(0) / groups, groups * t.size(1), t.size(2), t.size(3)});
}

std::vector<Tensor> grouped_views(const std::vector<Tensor>& zs, int64_t groups) {
  std::vector<Tensor> out;
  for (const auto& z : zs) out.push_back(grouped_view(z, groups));
  return out;
}

// One copy at most: the layout change and the cast to the convolution dtype happen together.
static Tensor conv_operand(const Tensor& t, bool channels_last, at::ScalarType dtype) {
  return t.to(t.options().dtype(dtype), /*non_blocking=*/false, /*copy=*/false,
              channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Preserve);
}

static Tensor conv_input(const Tensor& x, const ConvConfig& cfg) {
  return conv_operand(x, cfg.channels_last, cfg.dtype_for(x));
}

static Tensor conv_weight(const Tensor& w, const Tensor& x, const ConvConfig& cfg) {
  return w.to(cfg.dtype_for(x));
}

// Conv output -> the contiguous tensor of x's dtype the epilogue reads (no copy when it already is).
static Tensor epilogue_operand(const Tensor& z, const Tensor& x) {
  return z.to(z.options().dtype(x.scalar_type()), false, false, at::MemoryFormat::Contiguous);
}

std::vector<Tensor> mixed_convs(const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7,
                                const ConvConfig& cfg) {
  const Tensor x = conv_input(x_in, cfg);
  if (cfg.stacked)
    return {epilogue_operand(at::conv2d(x, conv_weight(stacked_weight(w3, w5, w7), x_in, cfg), {}, 1, 3), x_in)};
  return {epilogue_operand(conv_same(x, conv_weight(w3, x_in, cfg)), x_in),
          epilogue_operand(conv_same(x, conv_weight(w5, x_in, cfg)), x_in),
          epilogue_operand(conv_same(x, conv_weight(w7, x_in, cfg)), x_in)};
}

std::vector<Tensor> empty_like_convs(const std::vector<Tensor>& zs, bool /*stacked*/) {
  std::vector<Tensor> out;
  for (const auto& z : zs) out.push_back(at::empty_like(z, at::MemoryFormat::Contiguous));
  return out;
}

std::vector<Tensor> saved_or_recomputed_convs(const Tensor& saved, const Tensor& x, const Tensor& w3,
                                              const Tensor& w5, const Tensor& w7, const ConvConfig& cfg) {
  if (saved.numel() == 0) return mixed_convs(x, w3, w5, w7, cfg);  // the recompute
  TORCH_CHECK(saved.dim() == 5 && saved.size(0) == 3 && saved.sizes().slice(1) == x.sizes(),
              "mixed_op: saved conv outputs must be a (3, N, C, H, W) tensor");
  const Tensor s = saved.contiguous();  // a copy only for the outputs of a channels_last x
  return {s[0], s[1], s[2]};
}

std::pair<std::vector<Tensor>, Tensor> forward_convs(const Tensor& x_in, const Tensor& w3, const Tensor& w5,
                                                     const Tensor& w7, const ConvConfig& cfg, bool keep) {
  if (!keep) return {mixed_convs(x_in, w3, w5, w7, cfg), x_in.new_empty({0})};
  // Each conv output is copied once, straight into the kept buffer (layout and dtype change included).
  const Tensor x = conv_input(x_in, cfg);
  Tensor saved = at::empty({3, x.size(0), x.size(1), x.size(2), x.size(3)}, x_in.options());
  const Tensor* ws[3] = {&w3, &w5, &w7};
  for (int k = 0; k < 3; ++k) saved[k].copy_(conv_same(x, conv_weight(*ws[k], x_in, cfg)));
  return {{saved[0], saved[1], saved[2]}, saved};
}

ForwardOperands forward_operands(const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7,
                                 ConvConfig cfg, int64_t groups, bool keep) {
  ForwardOperands o;
  cfg.stacked = o.stacked = cfg.stacked && groups == 1;  // the stacked layout has no grouped view
  o.x_full = x_in.contiguous();
  auto convs = forward_convs(o.x_full, w3, w5, w7, cfg, keep);
  o.zs_full = std::move(convs.first);
  o.saved = std::move(convs.second);
  o.x = grouped_view(o.x_full, groups);
  o.zs = o.stacked ? o.zs_full : grouped_views(o.zs_full, groups);
  return o;
}

BackwardOperands backward_operands(const Tensor& grad_out, const Tensor& x_in, const Tensor& w3,
                                   const Tensor& w5, const Tensor& w7, const Tensor& saved, ConvConfig cfg,
                                   int64_t groups) {
  BackwardOperands o;
  cfg.stacked = o.stacked = cfg.stacked && groups == 1 && saved.numel() == 0;
  o.x_full = x_in.contiguous();
  o.g_full = grad_out.contiguous();
  o.zs_full = saved_or_recomputed_convs(saved, o.x_full, w3, w5, w7, cfg);
  o.gzs_full = empty_like_convs(o.zs_full, o.stacked);
  o.x = grouped_view(o.x_full, groups);
  o.g = grouped_view(o.g_full, groups);
  o.zs = o.stacked ? o.zs_full : grouped_views(o.zs_full, groups);
  o.gzs = o.stacked ? o.gzs_full : grouped_views(o.gzs_full, groups);
  return o;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> mixed_convs_backward(
    const Tensor& x_in, const std::vector<Tensor>& grads_z, const Tensor& w3, const Tensor& w5,
    const Tensor& w7, const ConvConfig& cfg, bool need_input_grad, bool need_weight_grad) {
  const std::array<bool, 3> mask = {need_input_grad, need_weight_grad, false};
  const Tensor x = conv_input(x_in, cfg);
  const at::ScalarType cd = cfg.dtype_for(x_in);
  const Tensor* ws[3] = {&w3, &w5, &w7};
  Tensor gx = need_input_grad ? Tensor() : x_in.new_empty({0});
  Tensor gw[3];
  // Gradients come back in the convolution dtype; they are accumulated and returned in x's dtype.
  const auto own_dtype = [&](const Tensor& t, const Tensor& like) { return t.to(like.scalar_type()); };
  if (cfg.stacked) {
    auto r = at::convolution_backward(conv_operand(grads_z[0], cfg.channels_last, cd), x,
                                      conv_weight(stacked_weight(w3, w5, w7), x_in, cfg), std::nullopt, {1, 1},
                                      {3, 3}, {1, 1}, false, {0, 0}, 1, mask);
    if (need_input_grad) gx = own_dtype(std::get<0>(r), x_in);
    if (need_weight_grad) {
      const Tensor g = own_dtype(std::get<1>(r), w3);
      const int64_t C = w3.size(0);
      gw[0] = g.slice(0, 0, C).slice(2, 2, 5).slice(3, 2, 5).contiguous();
      gw[1] = g.slice(0, C, 2 * C).slice(2, 1, 6).slice(3, 1, 6).contiguous();
      gw[2] = g.slice(0, 2 * C, 3 * C).contiguous();
    }
  } else {
    for (int k = 0; k < 3; ++k) {
      auto [gxk, gwk] = conv_same_backward(conv_operand(grads_z[k], cfg.channels_last, cd), x,
                                           conv_weight(*ws[k], x_in, cfg), need_input_grad, need_weight_grad);
      if (need_input_grad) {
        const Tensor gk = own_dtype(gxk, x_in);
        gx = k == 0 ? gk : gx.add_(gk);
      }
      if (need_weight_grad) gw[k] = own_dtype(gwk, w3).contiguous();
    }
  }
  if (need_input_grad) gx = gx.contiguous(x_in.suggest_memory_format());  // channels_last x: stays NHWC
  if (!need_weight_grad)
    for (int k = 0; k < 3; ++k) gw[k] = ws[k]->new_empty({0});
  return {gx, gw[0], gw[1], gw[2]};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> mixed_op_forward_cpu(
    const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7, const Tensor& bn_weight,
    const Tensor& bn_bias, const Tensor& alpha, const Tensor& running_mean, const Tensor& running_var,
    bool training, double eps, bool stacked, bool channels_last, int64_t groups, bool keep,
    std::optional<at::ScalarType> conv_dtype) {
  check_mixed_op_args(x_in, w3, w5, w7, bn_weight, alpha, groups);
  if (channels_last && !stacked && is_nhwc(x_in))
    return mixed_op_forward_nhwc(x_in, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training,
                                 eps, groups, keep, conv_dtype);
  const ForwardOperands ops =
      forward_operands(x_in, w3, w5, w7, ConvConfig{stacked, channels_last, conv_dtype}, groups, keep);
  const Tensor &x_full = ops.x_full, &x = ops.x, &saved = ops.saved;
  const std::vector<Tensor>& zs = ops.zs;
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  std::vector<double> mean(3 * C), var(3 * C);
  Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixed_op_forward_cpu", [&] {
    Branches<scalar_t> z(zs, C, HW);
    if (training) {
      batch_stats<scalar_t>(z, N, C, mean.data(), var.data());
    } else {
      mean = to_doubles(running_mean);
      var = to_doubles(running_var);
    }
    const std::vector<double> a = to_doubles(alpha);
    const BnAffine bn = bn_affine(bn_weight, bn_bias, mean, var, eps);
    forward_epilogue<scalar_t>(x.data_ptr<scalar_t>(), z, bn.scale.data(), bn.shift.data(), a.data(), N, C,
                               out.data_ptr<scalar_t>());
  });
  auto opts = bn_weight.options();
  Tensor mean_t = at::tensor(mean, opts.dtype(at::kDouble)).view({3, C}).to(bn_weight.scalar_type());
  Tensor var_t = at::tensor(var, opts.dtype(at::kDouble)).view({3, C}).to(bn_weight.scalar_type());
  return {out.view(x_full.sizes()), mean_t, var_t, saved};
}

MixedOpGrads mixed_op_backward_cpu(
    const Tensor& grad_out, const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7,
    const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& alpha, const Tensor& mean_t,
    const Tensor& var_t, const Tensor& saved, bool training, double eps, bool stacked, bool channels_last,
    int64_t groups, bool need_input_grad, bool need_weight_grad, std::optional<at::ScalarType> conv_dtype) {
  check_mixed_op_args(x_in, w3, w5, w7, bn_weight, alpha, groups);
  if (channels_last && !stacked && is_nhwc(x_in))
    return mixed_op_backward_nhwc(grad_out, x_in, w3, w5, w7, bn_weight, bn_bias, alpha, mean_t, var_t, saved,
                                  training, eps, groups, need_input_grad, need_weight_grad, conv_dtype);
  const ConvConfig cfg{stacked, channels_last, conv_dtype};
  const BackwardOperands ops = backward_operands(grad_out, x_in, w3, w5, w7, saved, cfg, groups);
  const Tensor &x_full = ops.x_full, &g_full = ops.g_full, &x = ops.x, &g = ops.g;
  const std::vector<Tensor> &zs = ops.zs, &gzs = ops.gzs;
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const std::vector<double> mean = to_doubles(mean_t), var = to_doubles(var_t);
  const std::vector<double> a = to_doubles(alpha);
  const BnAffine bn = bn_affine(bn_weight, bn_bias, mean, var, eps);
  const std::vector<double> &invstd = bn.invstd, &scale = bn.scale, &shift = bn.shift;
  std::vector<double> sum_gy(3 * C), sum_gyx(3 * C), sum_gr(3 * C), sum_gx(C);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixed_op_backward_cpu", [&] {
    Branches<scalar_t> z(zs, C, HW), gz(gzs, C, HW);
    backward_reduce<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), z, mean.data(), invstd.data(),
                              scale.data(), shift.data(), a.data(), N, C, sum_gy.data(), sum_gyx.data(),
                              sum_gr.data(), sum_gx.data());
    backward_grad_z<scalar_t>(g.data_ptr<scalar_t>(), z, gz, mean.data(), invstd.data(), scale.data(),
                              shift.data(), a.data(), sum_gy.data(), sum_gyx.data(), training, N, C);
  });
  auto [gx, gw3, gw5, gw7] = mixed_convs_backward(x_full, ops.gzs_full, w3, w5, w7,
                                                  ConvConfig{ops.stacked, channels_last, conv_dtype},
                                                  need_input_grad, need_weight_grad);
  if (need_input_grad) gx.add_(g_full, a[0]);
  std::vector<double> galpha(4, 0.0);
  for (int64_t c = 0; c < C; ++c) {
    galpha[0] += sum_gx[c];
    for (int k = 0; k < 3; ++k) galpha[k + 1] += sum_gr[k * C + c];
  }
  auto dopts = at::TensorOptions().dtype(at::kDouble);
  const auto dtype = bn_weight.scalar_type();
  Tensor g_gamma = at::tensor(sum_gyx, dopts).view({3, C}).to(dtype);
  Tensor g_beta = at::tensor(sum_gy, dopts).view({3, C}).to(dtype);
  Tensor g_alpha = at::tensor(galpha, dopts).view(alpha.sizes()).to(alpha.scalar_type());
  return {gx, gw3, gw5, gw7, g_gamma, g_beta, g_alpha};
}

}  // namespace frsengine
