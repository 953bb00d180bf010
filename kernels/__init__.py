"""Triton kernels of the fused search ops (installed as ``frsengine.kernels``).

One module per op holds its ``@triton.jit`` kernels and the host functions that launch them with
the contract of the matching op in ``frsengine.ops``. On CPU they run only under the Triton
interpreter: set ``TRITON_INTERPRET=1`` before triton is imported.
"""
