"""The convolution part of the fused mixed op, shared by the Python-hosted implementations.

The 3x3/5x5/7x7 candidates (stride 1, padding 1/2/3) read the same 7x7 window: the smaller
kernels are its centre. ``stacked`` runs them as one convolution with a zero-padded (3C, C, 7, 7)
weight (one pass over the input, 147 taps instead of 83); otherwise three convolutions. Measured on
the 2-core CPU with oneDNN (torch 2.13, batch 4, fwd+bwd of the convs alone, quiet machine):
stacked/three = 0.96x at C=8 128px, 1.05x at C=16 64px, 1.6-1.8x *slower* at C >= 32; stacked
only won (1.2-2.8x) while the cores were shared with other jobs, where fewer parallel regions pay.
So three convolutions are the default and ``FRSENGINE_MIXED_CONV=stacked`` opts in (GPU: measure
there). csrc/mixed_op.cpp has the C++ twin of these helpers.

Layout: the epilogues work on contiguous NCHW tensors, but oneDNN convolves small channel counts
far faster in channels_last (three convs fwd+bwd, batch 12, quiet 2-core CPU: 1.8x at C=8 128px,
1.2-1.4x at C=16-64), and converting the outputs back costs less than that gain. So on CPU the
convolutions read a channels_last copy of x and their outputs are made contiguous — unless x is
channels_last already: the fused supernet's nodes then compute in channels_last throughout
(``frsengine.nas.fused.node_layout``) and the C++ kernels run their epilogue on the NHWC tensors
(csrc/mixed_op_nhwc.cpp), with no copies at all. ``FRSENGINE_CONV_LAYOUT=channels_last|contiguous``
overrides the per-device default.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

KERNEL_SIZES = (3, 5, 7)
STACKED_MAX_CHANNELS = 0  # stacked never won on a quiet CPU (see above)


def use_stacked_conv(channels: int) -> bool:
    """Heuristic choice, overridable with FRSENGINE_MIXED_CONV=stacked|separate."""
    mode = os.environ.get("FRSENGINE_MIXED_CONV", "").strip().lower()
    if mode in ("stacked", "separate"):
        return mode == "stacked"
    if mode:
        raise ValueError(f"FRSENGINE_MIXED_CONV={mode!r} must be 'stacked' or 'separate'")
    return channels <= STACKED_MAX_CHANNELS


def use_channels_last(device: torch.device) -> bool:
    """Whether the mixed op's convolutions run on a channels_last copy of their input."""
    mode = os.environ.get("FRSENGINE_CONV_LAYOUT", "").strip().lower()
    if mode in ("channels_last", "contiguous"):
        return mode == "channels_last"
    if mode:
        raise ValueError(f"FRSENGINE_CONV_LAYOUT={mode!r} must be 'channels_last' or 'contiguous'")
    return device.type == "cpu"


def conv_input(x: torch.Tensor, conv_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x as the convolutions read it: channels_last copy (see above) and/or cast to ``conv_dtype``."""
    fmt = torch.channels_last if use_channels_last(x.device) else torch.preserve_format
    return x.to(dtype=conv_dtype or x.dtype, memory_format=fmt)


def stacked_weight(w3: torch.Tensor, w5: torch.Tensor, w7: torch.Tensor) -> torch.Tensor:
    return torch.cat([F.pad(w3, (2, 2, 2, 2)), F.pad(w5, (1, 1, 1, 1)), w7], dim=0)


def mixed_convs(x, w3, w5, w7, stacked: bool, conv_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """The three conv outputs z_3, z_5, z_7 (views of one (N, 3C, H, W) tensor when stacked).

    With ``conv_dtype`` (e.g. bfloat16 under autocast) the convolutions run in that dtype and their
    outputs come back contiguous in x's dtype: statistics and epilogues keep x's precision.
    """
    xc = conv_input(x, conv_dtype)
    cd = xc.dtype
    if stacked:
        z = F.conv2d(xc, stacked_weight(w3, w5, w7).to(cd), padding=3)
        return list(z.to(x.dtype, memory_format=torch.contiguous_format).chunk(3, dim=1))
    return [F.conv2d(xc, w.to(cd), padding=k // 2).to(x.dtype, memory_format=torch.contiguous_format)
            for w, k in zip((w3, w5, w7), KERNEL_SIZES)]


def mixed_convs_backward(x, grads_z, w3, w5, w7, stacked: bool, need_input: bool, need_weight: bool,
                         conv_dtype: torch.dtype | None = None):
    """(grad_x or None, [grad_w3, grad_w5, grad_w7] or None) from the grads of z_3, z_5, z_7.

    When stacked, ``grads_z`` may also be the single (N, 3C, H, W) gradient (no concatenation copy).
    With ``conv_dtype`` the convolution backward runs in that dtype; gradients are returned in the
    dtypes of x and the kernels (grad_x accumulated there).
    """
    mask = [need_input, need_weight, False]
    xc = conv_input(x, conv_dtype)
    cd = xc.dtype
    if stacked:
        gz = grads_z[0] if len(grads_z) == 1 else torch.cat(grads_z, dim=1)
        gx, gw, _ = torch.ops.aten.convolution_backward(
            gz.to(cd), xc, stacked_weight(w3, w5, w7).to(cd), None, [1, 1], [3, 3], [1, 1], False, [0, 0], 1, mask)
        gws = None
        if need_weight:
            c = w3.shape[0]
            gw = gw.to(w3.dtype)
            gws = [gw[:c, :, 2:5, 2:5].contiguous(), gw[c:2 * c, :, 1:6, 1:6].contiguous(), gw[2 * c:].contiguous()]
        return (gx.to(x.dtype, memory_format=torch.contiguous_format) if need_input else gx), gws
    gx, gws = None, []
    for g, w, k in zip(grads_z, (w3, w5, w7), KERNEL_SIZES):
        gxk, gwk, _ = torch.ops.aten.convolution_backward(
            g.to(cd), xc, w.to(cd), None, [1, 1], [k // 2, k // 2], [1, 1], False, [0, 0], 1, mask)
        if need_input:
            gxk = gxk.to(x.dtype)
            gx = gxk if gx is None else gx + gxk
        gws.append(gwk.to(w.dtype).contiguous() if need_weight else gwk)
    return (gx.contiguous() if need_input else gx), (gws if need_weight else None)
