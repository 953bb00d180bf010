// Stride-1 "same" convolutions of channels_last tensors with few channels, run width-paired.
//
// Why: oneDNN's AVX-512 kernels vectorise over channels, so with C <= 8 half of every 16-lane
// vector idles: on the 2-core Xeon the mixed op's convolutions at C=8, 128 px ran at 26-50 % of
// the fp32 peak against 55-90 % at C >= 16, and they are ~16 % of a fused FRSNet search step's
// convolution work.
// An NHWC (N, H, W, C) tensor is, in the same memory, an (N, H, W/2, 2C) tensor whose pixel j holds
// pixels 2j and 2j+1 ("paired"). A k x k convolution of the first is a k x (2P+1) convolution of
// the second (p = k/2, P = ceil(p/2)) with a (2 C_out, 2 C_in) weight that holds every tap twice
// and zeros elsewhere: 2(2P+1)/k times the multiply-adds (k = 3: 2, 5: 1.2, 7: 1.43) at full vector
// width, no copy of the activations. Measured on that CPU (C=8, N=8, 128 px; ATen convolutions
// alone, fwd / grad x / grad w): k=5 1.7x / 1.9x / 2.6x, k=7 1.4x / 1.6x / 1.8x faster, k=3 even;
// the whole mixed op fwd+bwd 1.2-1.35x at C=4-8, 0.77x at C=16 (benchmarks/paired_conv.py). Hence
// `auto` pairs float32 with at most 8 channels on AVX-512 CPUs only (unmeasured elsewhere: AVX2 has
// 8 lanes). The sums are those of the plain convolution plus products with zero weights.
#include "frsengine_ops.h"

#include <ATen/ATen.h>
#include <ATen/Version.h>

#include <array>
#include <cstdlib>
#include <string>

namespace frsengine {
namespace {

constexpr int64_t kPairMaxChannels = 8;  // both channel counts; half a 16-lane fp32 vector at most

bool avx512() {
  static const bool yes = at::get_cpu_capability().rfind("AVX512", 0) == 0;
  return yes;
}

int64_t paired_padding(int64_t k) { return (k / 2 + 1) / 2; }

// (N, C, H, W) channels_last <-> (N, 2C, H, W/2) channels_last: the same memory.
Tensor pair_width(const Tensor& t) {
  const int64_t N = t.size(0), C = t.size(1), H = t.size(2), W = t.size(3);
  return t.as_strided({N, 2 * C, H, W / 2}, {H * W * C, 1, W * C, 2 * C}, t.storage_offset());
}

Tensor unpair_width(const Tensor& t_in) {
  const Tensor t = t_in.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = t.size(0), C = t.size(1) / 2, H = t.size(2), W = 2 * t.size(3);
  return t.as_strided({N, C, H, W}, {H * W * C, 1, W * C, C}, t.storage_offset());
}

// Tap kw of the k x k kernel that paired output half a, input half b and paired column e read
// (-1: none, a zero of the paired weight).
int64_t source_tap(int64_t k, int64_t a, int64_t b, int64_t e) {
  const int64_t kw = 2 * (e - paired_padding(k)) + b - a + k / 2;
  return kw >= 0 && kw < k ? kw : -1;
}

// (Co, Ci, k, k) -> (2 Co, 2 Ci, k, 2P+1) channels_last: wp[a Co + o, b Ci + i, kh, e] = w[o, i, kh, tap].
Tensor paired_weight(const Tensor& w_in) {
  const Tensor w = w_in.contiguous();
  const int64_t Co = w.size(0), Ci = w.size(1), k = w.size(2), E = 2 * paired_padding(k) + 1;
  Tensor wp = at::zeros({2 * Co, k, E, 2 * Ci}, w.options());  // (O, H, W, I): channels_last storage
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w.scalar_type(), "paired_weight", [&] {
    const scalar_t* src = w.data_ptr<scalar_t>();
    scalar_t* dst = wp.data_ptr<scalar_t>();
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t o = 0; o < Co; ++o)
        for (int64_t kh = 0; kh < k; ++kh)
          for (int64_t e = 0; e < E; ++e)
            for (int64_t b = 0; b < 2; ++b) {
              const int64_t kw = source_tap(k, a, b, e);
              if (kw < 0) continue;
              scalar_t* row = dst + (((a * Co + o) * k + kh) * E + e) * 2 * Ci + b * Ci;
              for (int64_t i = 0; i < Ci; ++i) row[i] = src[((o * Ci + i) * k + kh) * k + kw];
            }
  });
  return wp.permute({0, 3, 1, 2});
}

// Gradient of the paired weight -> gradient of w: every tap sums its two places.
Tensor unpaired_weight_grad(const Tensor& gwp_in, int64_t Co, int64_t Ci, int64_t k) {
  const Tensor gwp = gwp_in.contiguous();
  const int64_t E = 2 * paired_padding(k) + 1;
  Tensor gw = at::zeros({Co, Ci, k, k}, gwp.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, gwp.scalar_type(), "unpaired_weight_grad", [&] {
    const scalar_t* src = gwp.data_ptr<scalar_t>();
    scalar_t* dst = gw.data_ptr<scalar_t>();
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t e = 0; e < E; ++e) {
          const int64_t kw = source_tap(k, a, b, e);
          if (kw < 0) continue;
          for (int64_t o = 0; o < Co; ++o)
            for (int64_t i = 0; i < Ci; ++i)
              for (int64_t kh = 0; kh < k; ++kh)
                dst[((o * Ci + i) * k + kh) * k + kw] += src[(((a * Co + o) * 2 * Ci + b * Ci + i) * k + kh) * E + e];
        }
  });
  return gw;
}

}  // namespace

bool width_paired(const Tensor& x, const Tensor& w) {
  const char* env = std::getenv("FRSENGINE_CONV_PAIRING");
  const std::string mode = env ? env : "";
  TORCH_CHECK(mode.empty() || mode == "auto" || mode == "on" || mode == "off", "FRSENGINE_CONV_PAIRING=", mode,
              " must be 'auto', 'on' or 'off'");
  if (mode == "off") return false;
  const bool possible = x.device().is_cpu() && x.dim() == 4 && w.dim() == 4 && x.size(3) % 2 == 0 &&
                        x.size(1) == w.size(1) && w.size(2) == w.size(3) && w.size(2) % 2 == 1 &&
                        x.is_contiguous(at::MemoryFormat::ChannelsLast) && x.scalar_type() == w.scalar_type();
  if (!possible || mode == "on") return possible;
  return x.scalar_type() == at::kFloat && w.size(0) <= kPairMaxChannels && w.size(1) <= kPairMaxChannels && avx512();
}

Tensor conv_same(const Tensor& x, const Tensor& w) {
  const int64_t k = w.size(2);
  if (!width_paired(x, w)) return at::conv2d(x, w, {}, 1, k / 2);
  return unpair_width(at::conv2d(pair_width(x), paired_weight(w), {}, 1, {k / 2, paired_padding(k)}));
}

std::pair<Tensor, Tensor> conv_same_backward(const Tensor& grad_y, const Tensor& x, const Tensor& w,
                                             bool need_input_grad, bool need_weight_grad) {
  const int64_t k = w.size(2);
  const std::array<bool, 3> mask = {need_input_grad, need_weight_grad, false};
  if (!width_paired(x, w)) {
    auto r = at::convolution_backward(grad_y, x, w, std::nullopt, {1, 1}, {k / 2, k / 2}, {1, 1}, false, {0, 0}, 1,
                                      mask);
    return {std::get<0>(r), std::get<1>(r)};
  }
  const Tensor g = grad_y.contiguous(at::MemoryFormat::ChannelsLast);
  auto r = at::convolution_backward(pair_width(g), pair_width(x), paired_weight(w), std::nullopt, {1, 1},
                                    {k / 2, paired_padding(k)}, {1, 1}, false, {0, 0}, 1, mask);
  return {need_input_grad ? unpair_width(std::get<0>(r)) : std::get<0>(r),
          need_weight_grad ? unpaired_weight_grad(std::get<1>(r), w.size(0), w.size(1), k) : std::get<1>(r)};
}

}  // namespace frsengine
