"""Weights asked of L2 ahead of the kernel that reads them.

A one-row step waits more than it reads: a kernel starts streaming its weights only once it runs (decisions.md).
Here each program of a kernel asks L2 for its share of the weights of the kernel AHEAD phases after it, by one
fire-and-forget bulk prefetch (Hopper's `cp.async.bulk.prefetch.L2`), so that DRAM keeps streaming across the
launches and the later kernel reads its weights from L2.

The table: int64 [phases, REGIONS, 2], each phase's weights as (address, bytes) regions in the order the step runs
them, trimmed to 16-byte bounds; zero bytes ask nothing. A kernel of phase i is given row i + AHEAD, or None past
the last phase.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .launch import INTERPRETED

REGIONS = tl.constexpr(2)  # the most weights one phase reads (the MLP's: fc and proj)
# TRTFLOW_ROW_PREFETCH=N: phases ahead that a kernel asks L2 for (0: none); sm_90 and later, not interpreted
AHEAD = int(os.environ.get("TRTFLOW_ROW_PREFETCH", "0"))


def table(phases: list[list[torch.Tensor]], device: torch.device) -> torch.Tensor:
    """The (address, bytes) table of `phases`, each a list of at most REGIONS contiguous weights."""
    rows = torch.zeros(len(phases), REGIONS.value, 2, dtype=torch.int64)
    for index, weights in enumerate(phases):
        if len(weights) > REGIONS.value or not all(w.is_contiguous() for w in weights):
            raise ValueError(f"a phase prefetches at most {REGIONS.value} contiguous weights")
        for region, w in enumerate(weights):
            start = -(-w.data_ptr() // 16) * 16  # the bulk prefetch's alignment, kept inside the weight
            rows[index, region] = torch.tensor([start, (w.data_ptr() + w.numel() * w.element_size() - start) // 16 * 16])
    return rows.to(device)


def ahead(rows: torch.Tensor | None, phase: int) -> torch.Tensor | None:
    """The row a kernel of `phase` is given: the phase AHEAD after it, None when off or past the end."""
    usable = rows is not None and AHEAD > 0 and not INTERPRETED and rows.is_cuda
    if not usable or phase + AHEAD >= rows.shape[0] or torch.cuda.get_device_capability(rows.device)[0] < 9:
        return None
    return rows[phase + AHEAD]


@triton.jit
def _bulk_prefetch_l2(address, size):
    """One thread of the program asks L2 for `size` bytes (a multiple of 16) at `address` (16-byte aligned)."""
    return tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .u32 t; mov.u32 t, %tid.x; setp.eq.u32 p, t, 0; setp.ne.and.u32 p, $2, 0, p;"
        " @p cp.async.bulk.prefetch.L2.global [$1], $2; mov.u32 $0, 0; }",
        "=r,l,r", [address, size], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def prefetch_l2(row_ptr):
    """This program's share of the regions of row_ptr (a table row), asked of L2; nothing where row_ptr is None."""
    if row_ptr is not None:
        program = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
        programs = tl.num_programs(0) * tl.num_programs(1)
        for region in tl.static_range(REGIONS):
            address = tl.load(row_ptr + 2 * region)
            size = tl.load(row_ptr + 2 * region + 1)
            share = tl.cdiv(size, programs * 16) * 16
            start = program.to(tl.int64) * share
            mine = tl.minimum(tl.maximum(size - start, 0), share)
            _bulk_prefetch_l2(tl.full([1], 0, tl.int64) + address + start, tl.full([1], 0, tl.int32) + mine.to(tl.int32))
