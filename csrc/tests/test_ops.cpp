// C++ unit tests of the CPU kernels (run by ctest; tests/ops/test_cmake.py runs them under pytest).
// Oracles: ATen's own conv2d / batch_norm / relu / upsample_bilinear2d for the forwards; central
// finite differences in double precision for the backwards (no autograd needed in C++).
#include "frsengine_ops.h"

#include <ATen/ATen.h>
#include <ATen/Version.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>

using at::Tensor;
using namespace frsengine;

namespace {

int failures = 0;

void expect_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  const double err = (got - want).abs().max().item<double>();
  const double scale = std::max(1.0, want.abs().max().item<double>());
  if (!(err <= tol * scale)) {
    std::printf("FAIL %s: max abs error %.3g > %.3g\n", what.c_str(), err, tol * scale);
    ++failures;
  }
}

// ||got - want|| / ||want|| (Frobenius): for results with a low-precision step in between, whose
// per-entry error is that precision times the size of the terms summed into the entry.
void expect_rel_norm(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  const double rel = ((got - want).norm() / want.norm().clamp_min(1e-30)).item<double>();
  if (!(rel <= tol)) {
    std::printf("FAIL %s: relative error %.3g > %.3g\n", what.c_str(), rel, tol);
    ++failures;
  }
}

struct MixedArgs {
  Tensor x, w3, w5, w7, gamma, beta, alpha, rm, rv;
  explicit MixedArgs(at::ScalarType dt, int64_t N = 2, int64_t C = 5, int64_t H = 9, int64_t W = 7) {
    auto o = at::TensorOptions().dtype(dt);
    x = at::randn({N, C, H, W}, o);
    w3 = at::randn({C, C, 3, 3}, o) * 0.2;
    w5 = at::randn({C, C, 5, 5}, o) * 0.1;
    w7 = at::randn({C, C, 7, 7}, o) * 0.05;
    gamma = at::rand({3, C}, o) + 0.5;
    beta = at::randn({3, C}, o) * 0.1;
    alpha = at::softmax(at::randn({4}, o), 0);
    rm = at::randn({3, C}, o) * 0.1;
    rv = at::rand({3, C}, o) + 0.5;
  }
};

// conv_dtype: the convolutions run in that dtype (inputs cast, output cast back), the rest in x's.
Tensor aten_mixed(const MixedArgs& a, bool training, std::optional<at::ScalarType> conv_dtype = std::nullopt) {
  const Tensor* ws[3] = {&a.w3, &a.w5, &a.w7};
  const at::ScalarType cd = conv_dtype.value_or(a.x.scalar_type());
  Tensor out = a.alpha[0] * a.x;
  for (int k = 0; k < 3; ++k) {
    Tensor z = at::conv2d(a.x.to(cd), ws[k]->to(cd), {}, 1, k + 1).to(a.x.scalar_type());
    Tensor rm = a.rm[k].clone(), rv = a.rv[k].clone();
    Tensor y = at::batch_norm(z, a.gamma[k], a.beta[k], training ? Tensor() : rm, training ? Tensor() : rv,
                              training, 0.1, 1e-5, false);
    out = out + a.alpha[k + 1] * at::relu(y);
  }
  return out;
}

void test_mixed_op_forward() {
  for (bool training : {true, false})
    for (bool stacked : {true, false}) {
      MixedArgs a(at::kFloat);
      auto [out, mean, var, saved] = mixed_op_forward_cpu(a.x, a.w3, a.w5, a.w7, a.gamma, a.beta, a.alpha, a.rm,
                                                          a.rv, training, 1e-5, stacked, /*channels_last=*/stacked,
                                                          /*groups=*/1, /*keep=*/false, std::nullopt);
      const std::string tag = std::string(training ? "train" : "eval") + (stacked ? "/stacked" : "/separate");
      expect_close(out, aten_mixed(a, training), 1e-5, "forward " + tag);
      if (training) {
        Tensor z = at::conv2d(a.x, a.w5, {}, 1, 2);
        expect_close(mean[1], z.mean({0, 2, 3}), 1e-5, "batch mean " + tag);
        expect_close(var[1], z.var({0, 2, 3}, /*unbiased=*/false), 1e-5, "batch var " + tag);
      }
    }
}

// Convolutions in bfloat16 (autocast's policy for convolutions), statistics and epilogue in float.
void test_mixed_op_bf16_convs() {
  for (bool training : {true, false})
    for (bool keep : {true, false}) {
      MixedArgs a(at::kFloat, 3, 8, 12, 10);
      auto fwd = mixed_op_forward_cpu(a.x, a.w3, a.w5, a.w7, a.gamma, a.beta, a.alpha, a.rm, a.rv, training,
                                      1e-5, false, /*channels_last=*/true, 1, keep, at::kBFloat16);
      const std::string tag = std::string(training ? "train" : "eval") + (keep ? "/keep" : "/recompute");
      const Tensor& out = std::get<0>(fwd);
      if (out.scalar_type() != at::kFloat) {
        std::printf("FAIL bf16 convs %s: output dtype is not float\n", tag.c_str());
        ++failures;
      }
      expect_close(out, aten_mixed(a, training, at::kBFloat16), 1e-4, "bf16 convs forward " + tag);
      expect_close(out, aten_mixed(a, training), 3e-2, "bf16 convs vs float " + tag);
      Tensor g = at::randn_like(a.x);
      auto grads = mixed_op_backward_cpu(g, a.x, a.w3, a.w5, a.w7, a.gamma, a.beta, a.alpha, std::get<1>(fwd),
                                         std::get<2>(fwd), std::get<3>(fwd), training, 1e-5, false, true, 1,
                                         true, true, at::kBFloat16);
      auto ref = mixed_op_backward_cpu(g, a.x, a.w3, a.w5, a.w7, a.gamma, a.beta, a.alpha, std::get<1>(fwd),
                                       std::get<2>(fwd), a.x.new_empty({0}), training, 1e-5, false, true, 1, true,
                                       true, std::nullopt);
      const char* names[4] = {"x", "w3", "w5", "w7"};
      const Tensor got[4] = {std::get<0>(grads), std::get<1>(grads), std::get<2>(grads), std::get<3>(grads)};
      const Tensor want[4] = {std::get<0>(ref), std::get<1>(ref), std::get<2>(ref), std::get<3>(ref)};
      for (int i = 0; i < 4; ++i) {
        if (got[i].scalar_type() != at::kFloat) {
          std::printf("FAIL bf16 convs %s: grad %s dtype is not float\n", tag.c_str(), names[i]);
          ++failures;
        }
        // A sanity bound (measured up to 6.6 %: bf16 conv outputs and grads through the BN backward);
        // tests/ops/test_mixed_precision.py checks these gradients against a same-policy oracle (5e-3).
        expect_rel_norm(got[i], want[i], 0.1, std::string("bf16 convs grad ") + names[i] + " " + tag);
      }
    }
}

// <grad_out, d out / d t . v> against the directional finite difference, for every input t.
// keep = true (conv outputs saved, no recompute) is checked in the separate-conv cases.
void test_mixed_op_backward() {
  for (bool training : {true, false})
    for (bool stacked : {true, false}) {
      MixedArgs a(at::kDouble);
      Tensor g = at::randn_like(a.x);
      const bool keep = !stacked;
      auto fwd = mixed_op_forward_cpu(a.x, a.w3, a.w5, a.w7, a.gamma, a.beta, a.alpha, a.rm, a.rv, training,
                                      1e-5, stacked, false, 1, keep, std::nullopt);
      auto grads = mixed_op_backward_cpu(g, a.x, a.w3, a.w5, a.w7, a.gamma, a.beta, a.alpha, std::get<1>(fwd),
                                         std::get<2>(fwd), std::get<3>(fwd), training, 1e-5, stacked, false, 1,
                                         true, true, std::nullopt);
      Tensor analytic[7] = {std::get<0>(grads), std::get<1>(grads), std::get<2>(grads), std::get<3>(grads),
                            std::get<4>(grads), std::get<5>(grads), std::get<6>(grads)};
      Tensor MixedArgs::*fields[7] = {&MixedArgs::x, &MixedArgs::w3, &MixedArgs::w5, &MixedArgs::w7,
                                      &MixedArgs::gamma, &MixedArgs::beta, &MixedArgs::alpha};
      const char* names[7] = {"x", "w3", "w5", "w7", "gamma", "beta", "alpha"};
      for (int i = 0; i < 7; ++i) {
        Tensor v = at::randn_like(a.*fields[i]);
        const double eps = 1e-6;
        auto f = [&](double s) {
          MixedArgs b = a;
          b.*fields[i] = a.*fields[i] + s * v;
          return (aten_mixed(b, training) * g).sum().item<double>();
        };
        const double numeric = (f(eps) - f(-eps)) / (2 * eps);
        const double got = (analytic[i] * v).sum().item<double>();
        if (std::abs(numeric - got) > 1e-5 * std::max(1.0, std::abs(numeric))) {
          std::printf("FAIL backward %s (%s%s): analytic %.10g numeric %.10g\n", names[i],
                      training ? "train" : "eval", stacked ? "/stacked" : "/separate", got, numeric);
          ++failures;
        }
      }
    }
}

// A channels_last x runs the NHWC kernels (mixed_op_nhwc.cpp): the same results as the NCHW path in
// double precision, for groups, keep and eval; out, grad x and saved come back channels_last.
void test_mixed_op_nhwc() {
  for (bool training : {true, false})
    for (bool keep : {true, false})
      for (int64_t groups : {1, 3}) {
        MixedArgs a(at::kDouble, 2 * groups, 6, 9, 7);
        const Tensor gamma = a.gamma.repeat({1, groups}), beta = a.beta.repeat({1, groups});
        const Tensor rm = a.rm.repeat({1, groups}), rv = a.rv.repeat({1, groups});
        const Tensor x_cl = a.x.contiguous(at::MemoryFormat::ChannelsLast);
        const Tensor g = at::randn_like(a.x);
        const std::string tag = std::string(training ? "train" : "eval") + (keep ? "/keep" : "/recompute") +
                                "/G=" + std::to_string(groups);
        std::tuple<Tensor, Tensor, Tensor, Tensor> fwd[2];
        MixedOpGrads grads[2];
        for (int nhwc = 0; nhwc < 2; ++nhwc) {
          const Tensor& x = nhwc ? x_cl : a.x;
          fwd[nhwc] = mixed_op_forward_cpu(x, a.w3, a.w5, a.w7, gamma, beta, a.alpha, rm, rv, training, 1e-5, false,
                                           true, groups, keep, std::nullopt);
          grads[nhwc] = mixed_op_backward_cpu(nhwc ? g.contiguous(at::MemoryFormat::ChannelsLast) : g, x, a.w3, a.w5,
                                              a.w7, gamma, beta, a.alpha, std::get<1>(fwd[nhwc]),
                                              std::get<2>(fwd[nhwc]), std::get<3>(fwd[nhwc]), training, 1e-5, false,
                                              true, groups, true, true, std::nullopt);
        }
        const Tensor outs[2][3] = {{std::get<0>(fwd[0]), std::get<1>(fwd[0]), std::get<2>(fwd[0])},
                                   {std::get<0>(fwd[1]), std::get<1>(fwd[1]), std::get<2>(fwd[1])}};
        const char* fwd_names[3] = {"out", "mean", "var"};
        for (int i = 0; i < 3; ++i)
          expect_close(outs[1][i], outs[0][i], 1e-12, std::string("nhwc ") + fwd_names[i] + " " + tag);
        const Tensor got[7] = {std::get<0>(grads[1]), std::get<1>(grads[1]), std::get<2>(grads[1]),
                               std::get<3>(grads[1]), std::get<4>(grads[1]), std::get<5>(grads[1]),
                               std::get<6>(grads[1])};
        const Tensor want[7] = {std::get<0>(grads[0]), std::get<1>(grads[0]), std::get<2>(grads[0]),
                                std::get<3>(grads[0]), std::get<4>(grads[0]), std::get<5>(grads[0]),
                                std::get<6>(grads[0])};
        const char* names[7] = {"x", "w3", "w5", "w7", "gamma", "beta", "alpha"};
        for (int i = 0; i < 7; ++i)
          expect_close(got[i], want[i], 1e-10, std::string("nhwc grad ") + names[i] + " " + tag);
        const bool layouts = std::get<0>(fwd[1]).is_contiguous(at::MemoryFormat::ChannelsLast) &&
                             std::get<0>(grads[1]).is_contiguous(at::MemoryFormat::ChannelsLast) &&
                             (!keep || std::get<3>(fwd[1]).permute({0, 1, 3, 4, 2}).is_contiguous());
        if (!layouts) {
          std::printf("FAIL nhwc %s: out, grad x or saved is not channels_last\n", tag.c_str());
          ++failures;
        }
      }
}

Tensor aten_aggregate(const std::vector<Tensor>& xs, const Tensor& beta, int64_t h, int64_t w) {
  Tensor out;
  for (size_t k = 0; k < xs.size(); ++k) {
    Tensor r = (xs[k].size(2) == h && xs[k].size(3) == w)
                   ? xs[k]
                   : at::upsample_bilinear2d(xs[k], {h, w}, /*align_corners=*/true);
    out = k == 0 ? beta[k] * r : out + beta[k] * r;
  }
  return out;
}

std::vector<Tensor> three_scales(at::ScalarType dt) {
  auto o = at::TensorOptions().dtype(dt);
  return {at::randn({2, 3, 6, 5}, o), at::randn({2, 3, 12, 10}, o), at::randn({2, 3, 23, 19}, o)};
}

void test_beta_aggregate_forward() {
  auto xs = three_scales(at::kFloat);
  Tensor beta = at::rand({3});
  for (auto [h, w] : {std::pair<int64_t, int64_t>{12, 10}, {1, 1}, {30, 7}})
    expect_close(beta_aggregate_forward_cpu(xs, beta, h, w), aten_aggregate(xs, beta, h, w), 1e-5,
                 "aggregate forward " + std::to_string(h) + "x" + std::to_string(w));
}

void test_beta_aggregate_backward() {
  auto xs = three_scales(at::kDouble);
  Tensor beta = at::rand({3}, at::kDouble);
  Tensor g = at::randn({2, 3, 12, 10}, at::kDouble);
  auto grads = beta_aggregate_backward_cpu(g, xs, beta, true);
  for (size_t k = 0; k < 3; ++k) {
    Tensor want = (xs[k].size(2) == 12) ? beta[k] * g
                                        : at::upsample_bilinear2d_backward(beta[k] * g, {12, 10}, xs[k].sizes(), true);
    expect_close(grads[k], want, 1e-10, "aggregate grad x" + std::to_string(k));
  }
  Tensor want_beta = at::stack({(g * at::upsample_bilinear2d(xs[0], {12, 10}, true)).sum(), (g * xs[1]).sum(),
                                (g * at::upsample_bilinear2d(xs[2], {12, 10}, true)).sum()});
  expect_close(grads[3], want_beta, 1e-10, "aggregate grad beta");
  auto only_beta = beta_aggregate_backward_cpu(g, xs, beta, false);
  if (only_beta.size() != 1) {
    std::printf("FAIL need_input_grad=false returned %zu tensors\n", only_beta.size());
    ++failures;
  }
}

// The width-paired convolution (forced on) against ATen's plain one: forward, grad x and grad w, for
// every kernel size of the mixed op, a few channel counts and an odd width (never paired).
void test_paired_conv() {
  setenv("FRSENGINE_CONV_PAIRING", "on", 1);
  for (auto [C, W] : {std::pair<int64_t, int64_t>{8, 12}, {3, 10}, {5, 9}}) {
    auto o = at::TensorOptions().dtype(at::kDouble);
    Tensor x = at::randn({2, C, 7, W}, o).contiguous(at::MemoryFormat::ChannelsLast);
    for (int64_t k : kKernelSizes) {
      Tensor w = at::randn({C, C, k, k}, o);
      const std::string tag = "paired conv C" + std::to_string(C) + " W" + std::to_string(W) + " k" + std::to_string(k);
      if (width_paired(x, w) != (W % 2 == 0)) {
        std::printf("FAIL %s: width_paired = %d\n", tag.c_str(), int(width_paired(x, w)));
        ++failures;
      }
      Tensor y = conv_same(x, w);
      expect_close(y, at::conv2d(x, w, {}, 1, k / 2), 1e-12, tag + " forward");
      if (!y.is_contiguous(at::MemoryFormat::ChannelsLast)) {
        std::printf("FAIL %s: output is not channels_last\n", tag.c_str());
        ++failures;
      }
      Tensor g = at::randn_like(y);
      auto [gx, gw] = conv_same_backward(g, x, w, true, true);
      auto want = at::convolution_backward(g, x, w, std::nullopt, {1, 1}, {k / 2, k / 2}, {1, 1}, false, {0, 0}, 1,
                                           {true, true, false});
      expect_close(gx, std::get<0>(want), 1e-12, tag + " grad x");
      expect_close(gw, std::get<1>(want), 1e-12, tag + " grad w");
    }
  }
  setenv("FRSENGINE_CONV_PAIRING", "off", 1);
  Tensor x = at::randn({1, 8, 5, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  if (width_paired(x, at::randn({8, 8, 3, 3}))) {
    std::printf("FAIL FRSENGINE_CONV_PAIRING=off still pairs\n");
    ++failures;
  }
  // auto (unset): float32 with <= 8 channels on AVX-512 only, where it was measured faster.
  unsetenv("FRSENGINE_CONV_PAIRING");
  const bool avx512 = at::get_cpu_capability().rfind("AVX512", 0) == 0;
  Tensor x16 = at::randn({1, 16, 5, 6}).contiguous(at::MemoryFormat::ChannelsLast);
  if (width_paired(x, at::randn({8, 8, 3, 3})) != avx512 || width_paired(x16, at::randn({16, 16, 3, 3})) ||
      width_paired(x.to(at::kDouble), at::randn({8, 8, 3, 3}, at::kDouble))) {
    std::printf("FAIL auto pairing: expected float32 C=8 only%s\n", avx512 ? "" : " (none: no AVX-512)");
    ++failures;
  }
}

void test_dispatcher() {
  auto op = c10::Dispatcher::singleton()
                .findSchemaOrThrow("frsengine_native::beta_aggregate_forward", "")
                .typed<Tensor(at::TensorList, const Tensor&, int64_t, int64_t)>();
  auto xs = three_scales(at::kFloat);
  Tensor beta = at::rand({3});
  expect_close(op.call(xs, beta, 8, 8), aten_aggregate(xs, beta, 8, 8), 1e-5, "dispatcher call");
}

}  // namespace

int main(int argc, char** argv) {
  at::manual_seed(0);
  const std::map<std::string, std::function<void()>> cases = {
      {"mixed_op_forward", test_mixed_op_forward},     {"mixed_op_backward", test_mixed_op_backward},
      {"mixed_op_bf16_convs", test_mixed_op_bf16_convs}, {"mixed_op_nhwc", test_mixed_op_nhwc},
      {"paired_conv", test_paired_conv},
      {"beta_aggregate_forward", test_beta_aggregate_forward},
      {"beta_aggregate_backward", test_beta_aggregate_backward}, {"dispatcher", test_dispatcher}};
  for (const auto& [name, fn] : cases) {
    if (argc > 1 && name != argv[1]) continue;
    fn();
    std::printf("%s: %s\n", name.c_str(), failures ? "FAILED" : "ok");
  }
  return failures ? 1 : 0;
}
