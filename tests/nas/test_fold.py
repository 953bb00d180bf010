import torch

from frsengine.models import build_derived, build_supernet, fold_bn
from frsengine.nas.decode import decode
from frsengine.nas.grid import GridPathNet
from frsengine.nas.ops import ConvBR
from frsengine.nas.space import SpaceConfig


def _train_bn_stats(net, *args, steps=3, **kw):
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net(*args, **kw)
    net.eval()


def test_fold_bn_keeps_eval_outputs_frsnet():
    net = build_derived(decode(build_supernet("frsnet", "tiny")), "tiny")
    x = torch.rand(2, 3, 32, 32)
    _train_bn_stats(net, x)
    with torch.no_grad():
        before = net(x)
        fold_bn(net)
        after = net(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert all(m.bn is None for m in net.modules() if isinstance(m, ConvBR))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_fold_bn_keeps_eval_outputs_mfpsnet():
    net = build_derived(decode(build_supernet("mfpsnet", "tiny")), "tiny")
    x = torch.rand(1, 3, 16, 16)
    priors = {p.name: torch.rand(1, p.channels, 16, 16) for p in net.cfg.priors}
    _train_bn_stats(net, x, priors=priors)
    with torch.no_grad():
        before = net(x, priors=priors)
        fold_bn(net)
        after = net(x, priors=priors)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_fold_bn_large_op_set():
    cell = ((0, 0, "sep_conv_3x3"), (0, 1, "dil_conv_5x5"), (1, 1, "avg_pool_3x3"), (1, 2, "sep_conv_5x5"))
    cfg = SpaceConfig("prior", 3, 4, layers=3, steps=2, block_multiplier=2, op_set="large")
    net = GridPathNet(cfg, (0, 0, 1), cell)
    x = torch.rand(2, 3, 16, 16)
    _train_bn_stats(net, x)
    with torch.no_grad():
        before = net(x)
        fold_bn(net)
        after = net(x)
    remaining = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert remaining and all(not m.affine for m in remaining)   # only the pooling BNs stay
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
