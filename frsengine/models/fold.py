"""BatchNorm folding for inference: Conv -> BN becomes one Conv with bias (eval semantics)."""
from __future__ import annotations

import torch
import torch.nn as nn

from frsengine.nas.ops import ConvBR


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics)."""
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.affine:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.affine:
        shift = shift + bn.bias
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bias * scale + shift)
    return fused


def fold_bn(model: nn.Module) -> nn.Module:
    """Fold every Conv->BN pair of ``model`` in place and put it in eval mode; returns ``model``.

    Handles :class:`ConvBR` and Conv2d immediately followed by BatchNorm2d inside nn.Sequential.
    BNs that follow no conv (e.g. after pooling) stay, in eval mode. Training the folded model
    afterwards is not meaningful (its convs now carry the BN statistics).
    """
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, ConvBR) and module.bn is not None:
            module.conv = fold_conv_bn(module.conv, module.bn)
            module.bn = None
        elif isinstance(module, nn.Sequential):
            children = list(module.children())
            for i in range(len(children) - 1):
                a, b = children[i], children[i + 1]
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b.track_running_stats:
                    module[i] = fold_conv_bn(a, b)
                    module[i + 1] = nn.Identity()
    return model
