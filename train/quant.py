"""The BitNet b1.58 quantisers of `tritium.golden.quant`, in torch, with straight-through
gradients for quantisation-aware training.

Every float step is written in the order golden uses, so that the codes and scales agree with
golden's bit for bit in float32 (checked in tests/test_train.py):

- weights: ``s = 1 / clamp(mean|W|, 1e-5)`` with the mean's sum taken in float64 and rounded
  once to float32 (golden does so to be independent of torch's summation order), then divided
  by the element count in float32; ``q = clamp(round(W * s), -1, 1)``, ``scale = 1 / s``;
- activations, per token: ``s = (1 / clamp(max|x|, 1e-5)) * 127`` (torch's own evaluation of
  ``127 / t``), ``q = clamp(round(x * s), -128, 127)``.

``torch.round`` rounds half to even, as NumPy's ``rint``.
"""

from __future__ import annotations

import torch

EPS = 1e-5


def weight_codes(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, scale): ternary codes of w's shape (float, in {-1, 0, 1}) and the 0-d float32 scale
    with w ~= q * scale. No gradient flows through this."""
    w = w.detach().float()
    total = w.abs().sum(dtype=torch.float64).float()
    # a tensor divisor: torch may turn a division by a Python scalar into a multiplication
    mean = total / torch.tensor(float(w.numel()), dtype=torch.float32)
    s = torch.tensor(1.0, dtype=torch.float32) / mean.clamp(min=EPS)
    q = torch.round(w * s).clamp(-1, 1)
    return q, torch.tensor(1.0, dtype=torch.float32) / s


def act_codes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, s): int8 codes of x's shape (as float) and per-token scales [..., 1], x ~= q / s."""
    x = x.detach().float()
    amax = x.abs().amax(dim=-1, keepdim=True)
    s = torch.reciprocal(amax.clamp(min=EPS)) * 127.0
    q = torch.round(x * s).clamp(-128, 127)
    return q, s


class _StraightThrough(torch.autograd.Function):
    """Forward: the given quantised value, exactly. Backward: the gradient, unchanged."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, quantised: torch.Tensor) -> torch.Tensor:
        return quantised

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    """q * scale in the forward pass, identity in the backward pass (straight-through)."""
    q, scale = weight_codes(w)
    return _StraightThrough.apply(w, q * scale)


def fake_quant_act(x: torch.Tensor) -> torch.Tensor:
    """q / s in the forward pass, identity in the backward pass (straight-through)."""
    q, s = act_codes(x)
    return _StraightThrough.apply(x, q / s)
