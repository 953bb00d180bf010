import pytest
import torch

from frsengine.nas.ops import OP_SETS, ConvBR, MixedOp, get_op_set, mixed_op


def test_default_op_set_is_the_papers():
    assert get_op_set("default").names == ("skip_connect", "conv_3x3", "conv_5x5", "conv_7x7")


def test_convbr_is_conv_bn_relu_without_bias():
    op = get_op_set("default").build("conv_5x5", 4)
    assert isinstance(op, ConvBR) and op.conv.bias is None and op.conv.kernel_size == (5, 5)
    y = op(torch.randn(2, 4, 9, 9))
    assert y.shape == (2, 4, 9, 9) and (y >= 0).all()


@pytest.mark.parametrize("name", sorted(OP_SETS))
def test_mixed_op_is_weighted_sum_of_candidates(name):
    op = MixedOp(4, get_op_set(name))
    x = torch.randn(2, 4, 8, 8)
    w = torch.softmax(torch.randn(len(op.ops)), 0)
    expected = sum(wi * o(x) for wi, o in zip(w, op.ops))
    torch.testing.assert_close(op(x, w), expected)
    assert op(x, w).shape == x.shape


def test_unknown_op_set_names_the_known_ones():
    with pytest.raises(KeyError, match="default"):
        get_op_set("nope")


def test_mixed_op_function_single_candidate():
    x = torch.randn(1, 2, 3, 3)
    assert torch.equal(mixed_op(x, torch.tensor([1.0]), [torch.nn.Identity()]), x)
