"""nnzoo's Dropout (nnzoo/models/layers/dropout.py): nn.Dropout's distribution and scaling on the fast path,
nn.Dropout's exact stream on the others."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnzoo.models.layers.dropout import LARGE, Dropout
from nnzoo.models.layers.fused import fused_kernels


def test_large_cpu_tensors_drop_with_probability_p_and_scale_the_rest():
    torch.manual_seed(0)
    p = 0.2
    x = torch.rand(LARGE + 1000, dtype=torch.float64).add_(0.5).requires_grad_()
    out = Dropout(p).train()(x)
    kept = out != 0
    rate = 1 - kept.double().mean().item()
    sigma = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(rate - p) < 5 * sigma  # ~0.002 of 0.2
    torch.testing.assert_close(out[kept], x[kept] / (1 - p), atol=0, rtol=1e-12)
    grad = torch.randn_like(x)
    out.backward(grad)
    torch.testing.assert_close(x.grad, torch.where(kept, grad / (1 - p), 0.0), atol=0, rtol=1e-12)


def test_masks_differ_between_calls_and_follow_the_seed():
    x = torch.ones(LARGE)
    drop = Dropout(0.5).train()
    torch.manual_seed(3)
    first, second = drop(x), drop(x)
    torch.manual_seed(3)
    again = drop(x)
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_small_tensors_eval_mode_and_the_plain_path_are_nn_dropout_exactly():
    small = torch.randn(1000, 32)
    large = torch.randn(LARGE)
    for x, train, enabled in ((small, True, True), (large, False, True), (large, True, False)):
        drop = Dropout(0.3).train(train)
        torch.manual_seed(5)
        with fused_kernels(enabled):
            got = drop(x)
        torch.manual_seed(5)
        assert torch.equal(got, F.dropout(x, 0.3, train))


def test_same_state_and_options_as_nn_dropout():
    assert Dropout(0.2).state_dict() == {} and Dropout(0.2).p == 0.2
    assert isinstance(Dropout(0.2), torch.nn.Dropout)
