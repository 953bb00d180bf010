"""Fused search ops: one ``torch.library`` declaration each (namespace ``frsengine``), a plain
PyTorch reference beside it and C++ / CUDA (frsengine._C) and Triton (frsengine.kernels)
implementations picked per device by :mod:`frsengine.ops.dispatch` (``FRSENGINE_KERNELS`` forces one).
"""
from frsengine.ops.beta_aggregation import aggregate, beta_aggregate
from frsengine.ops.dispatch import BACKENDS, available_backends, backend_for
from frsengine.ops.fused_mixed import fused_mixed_op, mixed_op, mixed_op_module_forward, update_running_stats

__all__ = ["BACKENDS", "aggregate", "available_backends", "backend_for", "beta_aggregate", "fused_mixed_op",
           "mixed_op", "mixed_op_module_forward", "update_running_stats"]
