"""Candidate operations of the cell-level search space, op-set registry and the mixed op.

Every op maps C channels to C channels at stride 1, so all candidates of an edge are summable.
The default set is the paper's O = {skip, conv 3x3, conv 5x5, conv 7x7}; each convolution is the
authors' ``ConvBR`` (Conv without bias -> BatchNorm -> ReLU). Because of the BN and ReLU inside each
candidate, the softmax(alpha)-weighted sum cannot be merged into one 7x7 kernel: the mixed op is the
exact sum of the separate branches (the reference semantics later fused kernels are checked against).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBR(nn.Module):
    """Conv2d (no bias) -> optional BatchNorm2d -> optional ReLU, 'same' padding at stride 1."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, bn: bool = True, relu: bool = True,
                 dilation: int = 1):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=pad, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(c_out) if bn else None
        self.relu = relu
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        # Not in-place: a mixed op feeds the same input to several candidates.
        return F.relu(x) if self.relu else x


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """DARTS 'none' op: contributes nothing; never chosen by the decoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class SepConv(nn.Module):
    """DARTS separable conv: (ReLU, depthwise kxk, pointwise 1x1, BN) twice."""

    def __init__(self, c: int, kernel_size: int):
        super().__init__()
        pad = kernel_size // 2
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, kernel_size, padding=pad, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, kernel_size, padding=pad, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """DARTS dilated conv: ReLU, depthwise kxk dilation 2, pointwise 1x1, BN."""

    def __init__(self, c: int, kernel_size: int, dilation: int = 2):
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, kernel_size, padding=pad, dilation=dilation, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _pool(kind: str, c: int) -> nn.Module:
    pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False) if kind == "avg" else nn.MaxPool2d(3, 1, 1)
    # DARTS normalises pooling outputs so their scale matches the conv candidates.
    return nn.Sequential(pool, nn.BatchNorm2d(c, affine=False))


OpFactory = Callable[[int], nn.Module]


class OpSet:
    """A named, ordered list of candidate ops. The order fixes the alpha columns."""

    def __init__(self, name: str, ops: dict[str, OpFactory], zero_ops: Sequence[str] = (),
                 skip_ops: Sequence[str] = ("skip_connect",)):
        self.name = name
        self.factories = dict(ops)
        self.names: tuple[str, ...] = tuple(ops)
        self.zero_ops = frozenset(zero_ops)   # never decoded (DARTS 'none')
        self.skip_ops = frozenset(skip_ops)   # parameter-free pass-through ops

    def __len__(self) -> int:
        return len(self.names)

    def index(self, op: str) -> int:
        return self.names.index(op)

    def build(self, op: str, channels: int) -> nn.Module:
        return self.factories[op](channels)


OP_SETS: dict[str, OpSet] = {}


def register_op_set(op_set: OpSet) -> OpSet:
    if op_set.name in OP_SETS:
        raise ValueError(f"op set {op_set.name!r} is already registered")
    OP_SETS[op_set.name] = op_set
    return op_set


def get_op_set(name: str) -> OpSet:
    """Return the registered op set ``name`` (``default`` or ``large``)."""
    try:
        return OP_SETS[name]
    except KeyError:
        raise KeyError(f"unknown op set {name!r}; known: {', '.join(sorted(OP_SETS))}") from None


register_op_set(OpSet("default", {
    "skip_connect": lambda c: Identity(),
    "conv_3x3": lambda c: ConvBR(c, c, 3),
    "conv_5x5": lambda c: ConvBR(c, c, 5),
    "conv_7x7": lambda c: ConvBR(c, c, 7),
}))

# The DARTS operation pool (8 ops) the paper's ablation "FRSNet-O_large" compares against.
register_op_set(OpSet("large", {
    "none": lambda c: Zero(),
    "max_pool_3x3": lambda c: _pool("max", c),
    "avg_pool_3x3": lambda c: _pool("avg", c),
    "skip_connect": lambda c: Identity(),
    "sep_conv_3x3": lambda c: SepConv(c, 3),
    "sep_conv_5x5": lambda c: SepConv(c, 5),
    "dil_conv_3x3": lambda c: DilConv(c, 3),
    "dil_conv_5x5": lambda c: DilConv(c, 5),
}, zero_ops=("none",)))


def mixed_op(x: torch.Tensor, weights: torch.Tensor, ops: Sequence[nn.Module]) -> torch.Tensor:
    """Reference mixed op: sum_o weights[o] * op_o(x) (weights already softmax-normalised).

    This is the function fused kernels replace; it must stay the plain, exact sum.
    """
    out = weights[0] * ops[0](x)
    for w, op in zip(weights[1:], ops[1:]):
        out = out + w * op(x)
    return out


class MixedOp(nn.Module):
    """One cell edge in the supernet: every candidate of ``op_set`` applied to the same input."""

    def __init__(self, channels: int, op_set: OpSet):
        super().__init__()
        self.op_names = op_set.names
        self.ops = nn.ModuleList(op_set.build(name, channels) for name in op_set.names)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return mixed_op(x, weights, self.ops)
