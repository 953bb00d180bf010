// Schemas of the native ops (namespace frsengine_native: private kernels behind the public
// frsengine::* ops declared in frsengine/ops/) and their CPU implementations. CUDA
// implementations register themselves in csrc/cuda/*.cu when the extension is built with CUDA.
#include "frsengine_ops.h"

#include <torch/library.h>

TORCH_LIBRARY(frsengine_native, m) {
  m.def("mixed_op_forward(Tensor x, Tensor w3, Tensor w5, Tensor w7, Tensor bn_weight, Tensor bn_bias, "
        "Tensor alpha, Tensor running_mean, Tensor running_var, bool training, float eps, bool stacked, "
        "bool channels_last, int groups, bool keep, ScalarType? conv_dtype=None) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("mixed_op_backward(Tensor grad_out, Tensor x, Tensor w3, Tensor w5, Tensor w7, Tensor bn_weight, "
        "Tensor bn_bias, Tensor alpha, Tensor mean, Tensor var, Tensor saved, bool training, float eps, "
        "bool stacked, bool channels_last, int groups, bool need_input_grad, bool need_weight_grad, "
        "ScalarType? conv_dtype=None) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("beta_aggregate_forward(Tensor[] inputs, Tensor beta, int out_h, int out_w) -> Tensor");
  m.def("beta_aggregate_backward(Tensor grad_out, Tensor[] inputs, Tensor beta, bool need_input_grad) "
        "-> Tensor[]");
}

TORCH_LIBRARY_IMPL(frsengine_native, CPU, m) {
  m.impl("mixed_op_forward", &frsengine::mixed_op_forward_cpu);
  m.impl("mixed_op_backward", &frsengine::mixed_op_backward_cpu);
  m.impl("beta_aggregate_forward", &frsengine::beta_aggregate_forward_cpu);
  m.impl("beta_aggregate_backward", &frsengine::beta_aggregate_backward_cpu);
}
