// Fused mixed op on CPU for channels_last inputs: the same contract and formulas as mixed_op.cpp's
// NCHW epilogue, computed in place on the NHWC tensors oneDNN convolves.
//
// Why: oneDNN convolves small channel counts far faster in channels_last, so the NCHW path copies x
// to NHWC, each conv output back to NCHW, each grad z to NHWC and grad x back: nine transposing
// copies per op and step, ~10 % of a fused FRSNet search step on the 2-core CPU. A supernet that
// keeps its activations channels_last (frsengine/nas/fused.py) pays none of them here.
//
// Layout: an NHWC tensor is a (rows = N * H * W, C) matrix; groups interleave along the batch
// (sample b belongs to group b % G), so a row's BN parameters are those of its sample's group.
// Loops run over flat blocks of L = m * C elements (m whole rows, L >= 64 where C allows) with
// parameters expanded to the block, so the inner loops are long contiguous SIMD loops whatever C.
// Reductions: fixed chunks of kRows rows of one sample; each chunk sums into per-lane scalar_t
// accumulators (at most kRows / m terms each), folded per channel in double; chunks are then added
// in chunk order: the result does not depend on the number of threads.
#include "frsengine_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>

namespace frsengine {
namespace {

constexpr int64_t kRows = 256;  // rows per reduction chunk (a multiple of every block height m)

struct Geometry {
  int64_t N, C, HW, G, CT;  // full batch, channels, pixels, groups, G * C
  int64_t m, L;             // rows per block, elements per block
  int64_t per_sample, chunks;
  Geometry(int64_t n, int64_t c, int64_t hw, int64_t g) : N(n), C(c), HW(hw), G(g), CT(g * c) {
    m = 1;
    while (2 * m * C <= 64) m *= 2;
    L = m * C;
    per_sample = (HW + kRows - 1) / kRows;
    chunks = N * per_sample;
  }
  int64_t group(int64_t t) const { return (t / per_sample) % G; }
  // Flat element range [first, last) of chunk t.
  std::pair<int64_t, int64_t> range(int64_t t) const {
    const int64_t b = t / per_sample, p0 = (t % per_sample) * kRows, p1 = std::min(HW, p0 + kRows);
    return {(b * HW + p0) * C, (b * HW + p1) * C};
  }
  double count() const { return static_cast<double>(N / G * HW); }
};

// values (3 * CT, row k * CT + g * C + c) expanded to blocks: table[(g * 3 + k) * L + j] = value of channel j % C.
template <typename T>
std::vector<T> expand(const Geometry& s, const double* values) {
  std::vector<T> table(static_cast<size_t>(s.G * 3 * s.L));
  for (int64_t g = 0; g < s.G; ++g)
    for (int k = 0; k < 3; ++k)
      for (int64_t j = 0; j < s.L; ++j) table[(g * 3 + k) * s.L + j] = values[k * s.CT + g * s.C + j % s.C];
  return table;
}

template <typename T>
const T* row_of(const std::vector<T>& table, const Geometry& s, int64_t g, int k) {
  return table.data() + (g * 3 + k) * s.L;
}

// Sum of lanes j = c, c + C, ... of acc (length L) for every channel c, into out[c] (double).
template <typename T>
void fold(const T* acc, const Geometry& s, double* out) {
  for (int64_t c = 0; c < s.C; ++c) {
    double sum = 0.0;
    for (int64_t j = c; j < s.L; j += s.C) sum += acc[j];
    out[c] = sum;
  }
}

// Per-chunk partial sums (chunks, 3, C) -> per-(k, group, channel) totals (3 * CT), in chunk order.
void add_chunks(const std::vector<double>& part, const Geometry& s, double* total) {
  std::fill(total, total + 3 * s.CT, 0.0);
  for (int64_t t = 0; t < s.chunks; ++t) {
    const int64_t g = s.group(t);
    for (int k = 0; k < 3; ++k)
      for (int64_t c = 0; c < s.C; ++c) total[k * s.CT + g * s.C + c] += part[(t * 3 + k) * s.C + c];
  }
}

template <typename T>
FRSENGINE_SIMD_CLONES __attribute__((noinline))
void sum_block(const T* __restrict__ z, int64_t n, T* __restrict__ acc) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) acc[j] += z[j];
}

template <typename T>
FRSENGINE_SIMD_CLONES __attribute__((noinline))
void sq_block(const T* __restrict__ z, int64_t n, const T* __restrict__ mean, T* __restrict__ acc) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T d = z[j] - mean[j];
    acc[j] += d * d;
  }
}

template <typename T>
void batch_stats(const T* const z[3], const Geometry& s, double* mean, double* var) {
  std::vector<double> part(static_cast<size_t>(s.chunks * 3 * s.C));
  const auto chunk_sums = [&](auto&& block) {
    at::parallel_for(0, s.chunks, grain_for(3 * kRows * s.C), [&](int64_t begin, int64_t end) {
      std::vector<T> acc(static_cast<size_t>(s.L));
      for (int64_t t = begin; t < end; ++t) {
        const auto [first, last] = s.range(t);
        for (int k = 0; k < 3; ++k) {
          std::fill(acc.begin(), acc.end(), T(0));
          for (int64_t off = first; off < last; off += s.L)
            block(z[k] + off, std::min(s.L, last - off), k, t, acc.data());
          fold(acc.data(), s, part.data() + (t * 3 + k) * s.C);
        }
      }
    });
  };
  chunk_sums([](const T* zp, int64_t n, int, int64_t, T* acc) { sum_block(zp, n, acc); });
  add_chunks(part, s, mean);
  const double count = s.count();
  for (int64_t i = 0; i < 3 * s.CT; ++i) mean[i] /= count;
  // Second pass around the mean rounded to T (no cancellation from E[z^2] - E[z]^2), corrected
  // exactly for the rounding: sum (z - m)^2 = sum (z - mf)^2 - M (m - mf)^2.
  std::vector<double> mean_rounded(3 * s.CT);
  for (int64_t i = 0; i < 3 * s.CT; ++i) mean_rounded[i] = static_cast<T>(mean[i]);
  const std::vector<T> mf = expand<T>(s, mean_rounded.data());
  chunk_sums([&](const T* zp, int64_t n, int k, int64_t t, T* acc) {
    sq_block(zp, n, row_of(mf, s, s.group(t), k), acc);
  });
  add_chunks(part, s, var);
  for (int64_t i = 0; i < 3 * s.CT; ++i) {
    const double d = mean[i] - mean_rounded[i];
    var[i] = (var[i] - count * d * d) / count;
  }
}

template <typename T>
FRSENGINE_SIMD_CLONES __attribute__((noinline))
void epilogue_block(const T* __restrict__ x, const T* __restrict__ z0, const T* __restrict__ z1,
                    const T* __restrict__ z2, T* __restrict__ out, int64_t n, const T* __restrict__ s0,
                    const T* __restrict__ s1, const T* __restrict__ s2, const T* __restrict__ h0,
                    const T* __restrict__ h1, const T* __restrict__ h2, T a0, T a1, T a2, T a3) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T y0 = z0[j] * s0[j] + h0[j], y1 = z1[j] * s1[j] + h1[j], y2 = z2[j] * s2[j] + h2[j];
    // Same summation order as the reference: ((a0 x + a1 r3) + a2 r5) + a3 r7.
    out[j] = a0 * x[j] + a1 * std::max(y0, T(0)) + a2 * std::max(y1, T(0)) + a3 * std::max(y2, T(0));
  }
}

template <typename T>
void forward_epilogue(const T* x, const T* const z[3], const Geometry& s, const double* scale, const double* shift,
                      const double* a, T* out) {
  const std::vector<T> sc = expand<T>(s, scale), sh = expand<T>(s, shift);
  at::parallel_for(0, s.chunks, grain_for(4 * kRows * s.C), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t g = s.group(t);
      const auto [first, last] = s.range(t);
      for (int64_t off = first; off < last; off += s.L)
        epilogue_block(x + off, z[0] + off, z[1] + off, z[2] + off, out + off, std::min(s.L, last - off),
                       row_of(sc, s, g, 0), row_of(sc, s, g, 1), row_of(sc, s, g, 2), row_of(sh, s, g, 0),
                       row_of(sh, s, g, 1), row_of(sh, s, g, 2), T(a[0]), T(a[1]), T(a[2]), T(a[3]));
    }
  });
}

// Backward pass 1, one block of one branch: lanes of sum g_y, sum g_y x_hat, sum g ReLU(y).
// (Non-inlined with restrict pointers, as in mixed_op.cpp: the ReLU mask stays a select.)
template <typename T>
FRSENGINE_SIMD_CLONES __attribute__((noinline))
void reduce_block(const T* __restrict__ gp, const T* __restrict__ zp, int64_t n, const T* __restrict__ s,
                  const T* __restrict__ h, const T* __restrict__ m, const T* __restrict__ is, T ak,
                  T* __restrict__ a_gy, T* __restrict__ a_gyx, T* __restrict__ a_gr) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T y = zp[j] * s[j] + h[j];
    const T gy = ak * gp[j] * (y > 0 ? T(1) : T(0));
    a_gy[j] += gy;
    a_gyx[j] += gy * ((zp[j] - m[j]) * is[j]);
    a_gr[j] += gp[j] * std::max(y, T(0));
  }
}

template <typename T>
FRSENGINE_SIMD_CLONES __attribute__((noinline))
void dot_block(const T* __restrict__ gp, const T* __restrict__ xp, int64_t n, T* __restrict__ acc) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) acc[j] += gp[j] * xp[j];
}

template <typename T>
FRSENGINE_SIMD_CLONES __attribute__((noinline))
void grad_z_block(const T* __restrict__ gp, const T* __restrict__ zp, T* __restrict__ out, int64_t n,
                  const T* __restrict__ s, const T* __restrict__ h, const T* __restrict__ m, const T* __restrict__ is,
                  T ak, const T* __restrict__ mgy, const T* __restrict__ mgyx) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T y = zp[j] * s[j] + h[j];
    const T gy = ak * gp[j] * (y > 0 ? T(1) : T(0));
    out[j] = s[j] * (gy - mgy[j] - (zp[j] - m[j]) * is[j] * mgyx[j]);
  }
}

struct BackwardSums {
  std::vector<double> gy, gyx, gr;  // (3 * CT)
  double gx = 0.0;                  // sum g x over everything (grad alpha_skip)
};

template <typename T>
BackwardSums backward_reduce(const T* g, const T* x, const T* const z[3], const Geometry& s,
                             const std::vector<T>& sc, const std::vector<T>& sh, const std::vector<T>& mn,
                             const std::vector<T>& is, const double* a) {
  std::vector<double> p_gy(s.chunks * 3 * s.C), p_gyx(s.chunks * 3 * s.C), p_gr(s.chunks * 3 * s.C), p_gx(s.chunks);
  at::parallel_for(0, s.chunks, grain_for(4 * kRows * s.C), [&](int64_t begin, int64_t end) {
    std::vector<T> acc(static_cast<size_t>(3 * s.L));
    T *a_gy = acc.data(), *a_gyx = a_gy + s.L, *a_gr = a_gyx + s.L;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t g0 = s.group(t);
      const auto [first, last] = s.range(t);
      std::fill(a_gy, a_gy + s.L, T(0));
      for (int64_t off = first; off < last; off += s.L) dot_block(g + off, x + off, std::min(s.L, last - off), a_gy);
      double gx = 0.0;
      for (int64_t j = 0; j < s.L; ++j) gx += a_gy[j];
      p_gx[t] = gx;
      for (int k = 0; k < 3; ++k) {
        std::fill(acc.begin(), acc.end(), T(0));
        for (int64_t off = first; off < last; off += s.L)
          reduce_block(g + off, z[k] + off, std::min(s.L, last - off), row_of(sc, s, g0, k), row_of(sh, s, g0, k),
                       row_of(mn, s, g0, k), row_of(is, s, g0, k), T(a[k + 1]), a_gy, a_gyx, a_gr);
        const int64_t at = (t * 3 + k) * s.C;
        fold(a_gy, s, p_gy.data() + at);
        fold(a_gyx, s, p_gyx.data() + at);
        fold(a_gr, s, p_gr.data() + at);
      }
    }
  });
  BackwardSums sums{std::vector<double>(3 * s.CT), std::vector<double>(3 * s.CT), std::vector<double>(3 * s.CT)};
  add_chunks(p_gy, s, sums.gy.data());
  add_chunks(p_gyx, s, sums.gyx.data());
  add_chunks(p_gr, s, sums.gr.data());
  for (int64_t t = 0; t < s.chunks; ++t) sums.gx += p_gx[t];
  return sums;
}

template <typename T>
void backward_grad_z(const T* g, const T* const z[3], T* const gz[3], const Geometry& s, const std::vector<T>& sc,
                     const std::vector<T>& sh, const std::vector<T>& mn, const std::vector<T>& is,
                     const std::vector<T>& mgy, const std::vector<T>& mgyx, const double* a) {
  at::parallel_for(0, s.chunks, grain_for(4 * kRows * s.C), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t g0 = s.group(t);
      const auto [first, last] = s.range(t);
      for (int k = 0; k < 3; ++k)
        for (int64_t off = first; off < last; off += s.L)
          grad_z_block(g + off, z[k] + off, gz[k] + off, std::min(s.L, last - off), row_of(sc, s, g0, k),
                       row_of(sh, s, g0, k), row_of(mn, s, g0, k), row_of(is, s, g0, k), T(a[k + 1]),
                       row_of(mgy, s, g0, k), row_of(mgyx, s, g0, k));
    }
  });
}

Tensor nhwc(const Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// The three conv outputs as channels_last tensors of x's dtype; with keep, views of one
// (3, N, C, H, W) tensor stored (3, N, H, W, C) (each output copied into it once).
std::pair<std::vector<Tensor>, Tensor> convs_nhwc(const Tensor& x, const Tensor& w3, const Tensor& w5,
                                                  const Tensor& w7, std::optional<at::ScalarType> conv_dtype,
                                                  bool keep) {
  const at::ScalarType cd = conv_dtype.value_or(x.scalar_type());
  const Tensor xc = x.to(cd);
  const Tensor* ws[3] = {&w3, &w5, &w7};
  Tensor saved;
  if (keep)
    saved = at::empty({3, x.size(0), x.size(2), x.size(3), x.size(1)}, x.options()).permute({0, 1, 4, 2, 3});
  std::vector<Tensor> zs;
  for (int k = 0; k < 3; ++k) {
    Tensor z = conv_same(xc, ws[k]->to(cd));
    if (keep) {
      saved[k].copy_(z);
      zs.push_back(saved[k]);
    } else {
      zs.push_back(nhwc(z.to(x.scalar_type())));
    }
  }
  return {zs, keep ? saved : x.new_empty({0})};
}

template <typename T>
void pointers(const std::vector<Tensor>& ts, T* out[3]) {
  for (int k = 0; k < 3; ++k) out[k] = ts[k].data_ptr<T>();
}

}  // namespace

bool is_nhwc(const Tensor& x) {
  return x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

std::tuple<Tensor, Tensor, Tensor, Tensor> mixed_op_forward_nhwc(
    const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7, const Tensor& bn_weight,
    const Tensor& bn_bias, const Tensor& alpha, const Tensor& running_mean, const Tensor& running_var,
    bool training, double eps, int64_t groups, bool keep, std::optional<at::ScalarType> conv_dtype) {
  const Tensor x = nhwc(x_in);
  const Geometry s(x.size(0), x.size(1), x.size(2) * x.size(3), groups);
  auto [zs, saved] = convs_nhwc(x, w3, w5, w7, conv_dtype, keep);
  std::vector<double> mean(3 * s.CT), var(3 * s.CT);
  Tensor out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixed_op_forward_nhwc", [&] {
    scalar_t* z[3];
    pointers(zs, z);
    if (training) {
      batch_stats<scalar_t>(z, s, mean.data(), var.data());
    } else {
      mean = to_doubles(running_mean);
      var = to_doubles(running_var);
    }
    const std::vector<double> a = to_doubles(alpha);
    const BnAffine bn = bn_affine(bn_weight, bn_bias, mean, var, eps);
    forward_epilogue<scalar_t>(x.data_ptr<scalar_t>(), z, s, bn.scale.data(), bn.shift.data(), a.data(),
                               out.data_ptr<scalar_t>());
  });
  const auto stats = [&](const std::vector<double>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).view({3, s.CT}).to(bn_weight.scalar_type());
  };
  return {out, stats(mean), stats(var), saved};
}

MixedOpGrads mixed_op_backward_nhwc(
    const Tensor& grad_out, const Tensor& x_in, const Tensor& w3, const Tensor& w5, const Tensor& w7,
    const Tensor& bn_weight, const Tensor& bn_bias, const Tensor& alpha, const Tensor& mean_t,
    const Tensor& var_t, const Tensor& saved, bool training, double eps, int64_t groups, bool need_input_grad,
    bool need_weight_grad, std::optional<at::ScalarType> conv_dtype) {
  const Tensor x = nhwc(x_in), g = nhwc(grad_out);
  const Geometry s(x.size(0), x.size(1), x.size(2) * x.size(3), groups);
  std::vector<Tensor> zs;
  if (saved.numel() == 0) {
    zs = convs_nhwc(x, w3, w5, w7, conv_dtype, false).first;
  } else {
    TORCH_CHECK(saved.dim() == 5 && saved.size(0) == 3 && saved.sizes().slice(1) == x.sizes(),
                "mixed_op: saved conv outputs must be a (3, N, C, H, W) tensor");
    // Stored (3, N, H, W, C) when this file's forward made them (no copy then).
    const Tensor s5 = saved.permute({0, 1, 3, 4, 2}).contiguous().permute({0, 1, 4, 2, 3});
    zs = {s5[0], s5[1], s5[2]};
  }
  std::vector<Tensor> gzs;
  for (int k = 0; k < 3; ++k) gzs.push_back(at::empty_like(x, at::MemoryFormat::ChannelsLast));
  const std::vector<double> mean = to_doubles(mean_t), var = to_doubles(var_t);
  const std::vector<double> a = to_doubles(alpha);
  const BnAffine bn = bn_affine(bn_weight, bn_bias, mean, var, eps);
  const std::vector<double> &invstd = bn.invstd, &scale = bn.scale, &shift = bn.shift;
  BackwardSums sums;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mixed_op_backward_nhwc", [&] {
    scalar_t *z[3], *gz[3];
    pointers(zs, z);
    pointers(gzs, gz);
    const std::vector<scalar_t> sc = expand<scalar_t>(s, scale.data()), sh = expand<scalar_t>(s, shift.data());
    const std::vector<scalar_t> mn = expand<scalar_t>(s, mean.data()), is = expand<scalar_t>(s, invstd.data());
    sums = backward_reduce<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), z, s, sc, sh, mn, is, a.data());
    const double count = s.count();
    std::vector<double> mgy(3 * s.CT, 0.0), mgyx(3 * s.CT, 0.0);
    if (training)
      for (int64_t i = 0; i < 3 * s.CT; ++i) {
        mgy[i] = sums.gy[i] / count;
        mgyx[i] = sums.gyx[i] / count;
      }
    backward_grad_z<scalar_t>(g.data_ptr<scalar_t>(), z, gz, s, sc, sh, mn, is, expand<scalar_t>(s, mgy.data()),
                              expand<scalar_t>(s, mgyx.data()), a.data());
  });
  auto [gx, gw3, gw5, gw7] = mixed_convs_backward(x, gzs, w3, w5, w7, ConvConfig{false, true, conv_dtype},
                                                  need_input_grad, need_weight_grad);
  if (need_input_grad) gx.add_(g, a[0]);
  std::vector<double> galpha(4, 0.0);
  galpha[0] = sums.gx;
  for (int k = 0; k < 3; ++k)
    for (int64_t c = 0; c < s.CT; ++c) galpha[k + 1] += sums.gr[k * s.CT + c];
  auto dopts = at::TensorOptions().dtype(at::kDouble);
  const auto dtype = bn_weight.scalar_type();
  return {gx,
          gw3,
          gw5,
          gw7,
          at::tensor(sums.gyx, dopts).view({3, s.CT}).to(dtype),
          at::tensor(sums.gy, dopts).view({3, s.CT}).to(dtype),
          at::tensor(galpha, dopts).view(alpha.sizes()).to(alpha.scalar_type())};
}

}  // namespace frsengine
