"""A layer norm folded into the linear after it, so that the linear's loop is a plain matmul of x as stored:

    LN(x)·Wᵀ + b = rstd·(x·(W∘γ)ᵀ − mean·Σ_k (W∘γ)) + W·β + b

with mean and rstd from the row statistics of the kernel that wrote x, applied in the epilogue. The step folds
QKV's and fc's layer norms from step.FOLD_ROWS rows with fp16/bf16 weights (a copy of each weight, counted in
KernelStep.nbytes); an int8 weight cannot take γ (per input column; its scale is per output channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..weights import LayerNorm, Linear, nbytes


@dataclass(frozen=True)
class FoldedLinear:
    weight: torch.Tensor  # W∘γ in the weight's dtype
    bias: torch.Tensor  # W·β + b, fp32
    sums: torch.Tensor  # Σ_k (W∘γ) of the rounded weight, fp32
    eps: float
    scale = None  # never quantized

    def nbytes(self) -> int:
        return nbytes(self.weight, self.bias, self.sums)


def fold(norm: LayerNorm, linear: Linear) -> FoldedLinear:
    if linear.quantized:
        raise ValueError("a weight-only int8 weight cannot take its layer norm's γ (per input column, its scale is "
                         "per output channel): its layer norm stays apart")
    w, gamma, beta = linear.weight.float(), norm.weight.float(), norm.bias.float()
    weight = (w * gamma).to(linear.weight.dtype)
    bias = w @ beta + (linear.bias.float() if linear.bias is not None else 0.0)
    return FoldedLinear(weight, bias, weight.float().sum(1), norm.eps)
