"""What the linear kernels take besides x and the weight (linear.py): how the layer norm before is done (`Norm`),
what follows the product (`Epilogue`), the row-statistics buffers one kernel leaves for the next layer norm, and the
argmax slots the lm_head merges into."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..weights import LayerNorm
from .fold import FoldedLinear
from .launch import DOT_MIN, row_tile

NO_ARGMAX = -(2**63)  # an empty argmax slot: below every packed (value, index)
LOW_WORD = tl.constexpr(2**32 - 1)  # a packed argmax's low word holds LOW_WORD - index (_pack_argmax)


@dataclass(frozen=True)
class Norm:
    """The layer norm before a linear: `layer_norm` normalized in the loop (statistics from a pass over x, or from
    `statistics`, the row_stats of x left by the kernel that wrote it); with a fold.FoldedLinear, `statistics`
    alone (mean and rstd applied in the epilogue); or neither: no layer norm."""

    layer_norm: LayerNorm | None = None
    statistics: torch.Tensor | None = None

    def check(self, linear, rows: int, width: int) -> None:
        if self.statistics is not None:
            check_stats(self.statistics, rows, width)
        if isinstance(linear, FoldedLinear):
            if self.statistics is None or self.layer_norm is not None:
                raise ValueError("a folded layer norm takes its statistics from Norm(statistics=…) alone: no "
                                 "layer_norm, the fold holds it")
        elif self.statistics is not None and self.layer_norm is None:
            raise ValueError("row statistics are a layer norm's: give it (Norm(layer_norm=…, statistics=…))")

    def eps(self, linear) -> float:
        if isinstance(linear, FoldedLinear):
            return linear.eps
        return self.layer_norm.eps if self.layer_norm is not None else 0.0


@dataclass(frozen=True)
class Epilogue:
    """What a plain linear does after the product: GELU, a residual added, its rows' partial sums stored for the
    next layer norm (`row_sums_into`, a row_stats buffer), its output dtype."""

    gelu: bool = False
    residual: torch.Tensor | None = None
    row_sums_into: torch.Tensor | None = None
    out_dtype: torch.dtype | None = None


def row_stats_shape(batch: int, width: int) -> tuple[int, int, int]:
    """[parts, 2, row tile]: a part per program of the narrowest blocks (BLOCK_N = DOT_MIN) over `width` outputs,
    padded to a power of two."""
    return triton.next_power_of_2(triton.cdiv(width, DOT_MIN.value)), 2, row_tile(batch)


def row_stats(batch: int, width: int, device: torch.device, count: int = 1) -> list[torch.Tensor]:
    """`count` zeroed buffers (one memset) for Epilogue(row_sums_into=…) of `batch` rows × `width` outputs, read as
    Norm(statistics=…). Every kernel that writes one buffer must have one shape (so one BLOCK_N): the parts none
    writes stay zero."""
    return list(torch.zeros((count, *row_stats_shape(batch, width)), dtype=torch.float32, device=device).unbind(0))


def check_stats(stats: torch.Tensor, rows: int, width: int) -> None:
    if not (row_tile(rows) > 1 and stats.is_contiguous() and stats.shape == row_stats_shape(rows, width)):
        raise ValueError(f"row statistics of {rows} rows × {width}: a contiguous {row_stats_shape(rows, width)} "
                         f"(kernels.row_stats), for two or more rows, not {tuple(stats.shape)}")


def argmax_slots(batch: int, device: torch.device) -> torch.Tensor:
    """Empty argmax slots for lm_head_argmax, one a row."""
    return torch.full((batch,), NO_ARGMAX, dtype=torch.long, device=device)


def argmax_of(packed: torch.Tensor) -> torch.Tensor:
    """The indices in what lm_head_argmax merged."""
    return LOW_WORD.value - (packed & LOW_WORD.value)
