"""What every kernel family shares at launch: the batch limit and row tiles, programmatic dependent launch, Triton's
CPU interpreter, and compile-only launches."""

from __future__ import annotations

import contextvars
import functools
import os

import torch
import triton
import triton.language as tl

MAX_BATCH = 64  # one tl.dot tile of rows: every weight read once per step
DOT_MIN = tl.constexpr(16)  # tl.dot's smallest tile side: 2-15 rows are padded to 16 (masked loads)

# Triton's CPU interpreter (TRITON_INTERPRET=1, the CPU tests): it cannot time, and cannot take a loaded value as a
# loop bound, so the kernels run fixed blocks and whole-cache loops there.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
INTERPRETED_BLOCKS = {"BLOCK_N": DOT_MIN.value, "BLOCK_K": 256}

# Programmatic dependent launch (Hopper on): None = where the GPU has it; False (or TRTFLOW_TRITON_PDL=0) to compare.
PDL: bool | None = False if os.environ.get("TRTFLOW_TRITON_PDL") == "0" else None

# Inside tuning.compiling_in_parallel: launches only compile their kernel (outputs left unwritten).
COMPILE_ONLY = contextvars.ContextVar("kernels_compile_only", default=False)


def row_tile(batch: int) -> int:
    """The linear kernels' BLOCK_M for `batch` rows: 1 (a row reduction), else the rows padded to a power of two
    ≥ DOT_MIN (a tl.dot tile)."""
    return 1 if batch == 1 else max(DOT_MIN.value, triton.next_power_of_2(batch))


def pdl_options() -> dict:
    """A kernel's PDL flag and the launch option that goes with it."""
    on = PDL if PDL is not None else _has_pdl()
    return {"PDL": on, "launch_pdl": True} if on else {"PDL": False}


@functools.cache
def _has_pdl() -> bool:
    return not INTERPRETED and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


def launcher(kernel, grid):
    """kernel[grid], or inside compiling_in_parallel its compile-only warm-up."""
    return functools.partial(kernel.warmup, grid=grid) if COMPILE_ONLY.get() else kernel[grid]
