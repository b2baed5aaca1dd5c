"""Split-K for the linear kernels: the grid's second axis splits the input width K into SPLIT_K chunks, so that a
linear of few output blocks still gives every SM a program, with output blocks wide enough that x is not read once
per narrow block (a 64-row proj of 1,024 outputs: 64 blocks of 16 read x 64 times; 16 blocks of 64 split 8 ways,
16 times, on 128 programs).

Each program adds its fp32 partial product into a workspace by atomic adds and counts itself in; the last of its
block to arrive takes the sum, leaving zeros behind, and runs the kernel's epilogue alone. The workspace, [BLOCK_M,
N] fp32 then a counter per output block, is one per device and shared by every launch: a launch touches it only
after waiting on the kernel before (PDL) and leaves it as it found it, so it is never cleared between launches.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import DOT_MIN, MAX_BATCH


@triton.constexpr_function
def chunk(k, split_k, block_k):
    """The columns of K one program of a split takes: whole strips of block_k."""
    return triton.cdiv(triton.cdiv(k, split_k), block_k) * block_k


@triton.jit
def combine(acc, ws_ptr, rows, row_ok, batch, batch_ok, N, SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr):
    """(the whole product where this program of its output block arrived last, the rows it writes): with SPLIT_K 1
    `acc` and `batch_ok` as they are; else batch_ok is all false in every program but the last."""
    if SPLIT_K > 1:
        tile = ws_ptr + batch[:, None] * N + rows[None, :]
        ok = batch_ok[:, None] & row_ok[None, :]
        tl.atomic_add(tile, acc, mask=ok, sem="relaxed")
        tl.debug_barrier()  # every thread's adds before the count (the release covers them)
        counter = ws_ptr + BLOCK_M * N + tl.program_id(0)
        last = tl.atomic_add(counter, 1.0, sem="acq_rel") == SPLIT_K - 1
        tl.debug_barrier()
        batch_ok = tl.where(last, batch_ok, False)
        ok = batch_ok[:, None] & row_ok[None, :]
        zeros = tl.zeros_like(acc)
        acc = tl.atomic_add(tile, zeros, mask=ok, sem="relaxed")  # read where the adds were made (L2)
        tl.store(tile, zeros, mask=ok)
        tl.store(counter, 0.0, mask=last)
    return acc, batch_ok


_WORKSPACES: dict[torch.device, list[torch.Tensor]] = {}


def workspace(device: torch.device, n: int) -> torch.Tensor:
    """The device's split-K workspace, zeros, with room for a linear of `n` outputs. A larger one replaces it for
    later launches; the smaller is kept alive, since a captured CUDA graph may hold its address."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # the key a tensor's own device gives
    need = MAX_BATCH * n + triton.cdiv(n, DOT_MIN.value)
    held = _WORKSPACES.setdefault(device, [])
    if not held or held[-1].numel() < need:
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(f"the split-K workspace must grow to {need} floats during a CUDA graph capture: "
                               "launch this linear once before capturing")
        held.append(torch.zeros(need, dtype=torch.float32, device=device))
    return held[-1]
