"""Decode attention: one program per (row, head), its query against the row's filled cache slots, online softmax in
fp32 over BLOCK_T slots at a time. Slots beyond a row's position are never read."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import INTERPRETED, pdl_options


@triton.jit
def _slots(ptr, t0, length, HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr):
    """BLOCK_T slots from t0 of one head's keys or values [CAPACITY, HEAD_DIM]; zeros (nothing read) from `length`."""
    slots = t0 + tl.arange(0, BLOCK_T)
    return tl.load(ptr + slots[:, None] * HEAD_DIM + tl.arange(0, HEAD_DIM)[None, :], mask=(slots < length)[:, None],
                   other=0.0)


@triton.jit
def _attend_slots(t0, length, q, k, v, values, running_max, total, acc, HEAD_DIM: tl.constexpr,
                  BLOCK_T: tl.constexpr):
    """Online softmax over the block of slots from t0, its keys `k`: the running max, the sum of weights and the
    weighted values. `v`: the block's values, or None to load them from `values` here, once the weights are made."""
    filled = t0 + tl.arange(0, BLOCK_T) < length
    scores = tl.where(filled, tl.sum(k.to(tl.float32) * q[None, :], axis=1), float("-inf"))
    new_max = tl.maximum(running_max, tl.max(scores, axis=0))
    weights = tl.exp(scores - new_max)
    rescale = tl.exp(running_max - new_max)
    if v is None:
        v = _slots(values, t0, length, HEAD_DIM, BLOCK_T)
    acc = acc * rescale + tl.sum(weights[:, None] * v.to(tl.float32), axis=0)
    return new_max, total * rescale + tl.sum(weights, axis=0), acc


@triton.jit
def attend(q, keys, values, length, CAPACITY: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr,
           WHOLE_CACHE: tl.constexpr, AHEAD: tl.constexpr = 0):
    """softmax(q·kᵀ)·v over the first `length` slots of one head's keys and values [CAPACITY, HEAD_DIM], fp32.
    AHEAD says how far each block's loads run ahead of its arithmetic: 0 the values loaded once the weights are
    made, 1 with the keys, 2 and the next block's keys and values loaded while this block's are used.
    WHOLE_CACHE (Triton's CPU interpreter, which cannot take a loaded value as a loop bound): the loop runs over every
    block, the masks alone leaving out the slots beyond."""
    running_max = tl.full([], float("-inf"), tl.float32)
    total = tl.zeros([], dtype=tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    if AHEAD == 2:
        k = _slots(keys, 0, length, HEAD_DIM, BLOCK_T)
        v = _slots(values, 0, length, HEAD_DIM, BLOCK_T)
    for t0 in range(0, CAPACITY if WHOLE_CACHE else length, BLOCK_T):
        if AHEAD == 2:
            k_next = _slots(keys, t0 + BLOCK_T, length, HEAD_DIM, BLOCK_T)
            v_next = _slots(values, t0 + BLOCK_T, length, HEAD_DIM, BLOCK_T)
        else:
            k = _slots(keys, t0, length, HEAD_DIM, BLOCK_T)
            v = _slots(values, t0, length, HEAD_DIM, BLOCK_T) if AHEAD == 1 else None
        running_max, total, acc = _attend_slots(t0, length, q, k, v, values, running_max, total, acc, HEAD_DIM,
                                                BLOCK_T)
        if AHEAD == 2:
            k, v = k_next, v_next
    return acc / total


@triton.jit
def _attention_kernel(qkv_ptr, kv_ptr, pos_ptr, out_ptr, heads, scale, CAPACITY: tl.constexpr,
                      HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr, WHOLE_CACHE: tl.constexpr, PDL: tl.constexpr,
                      AHEAD: tl.constexpr = 0):
    """One (row, head): its query against the cache's first position+1 slots, online softmax in fp32 over
    BLOCK_T slots at a time, the loads AHEAD of the arithmetic (attend). Slots beyond a row's position are never
    read; on the GPU the loop stops at the row's length."""
    if PDL:  # everything it reads is the previous kernels': it only lets the next kernel start loading weights
        tl.extra.cuda.gdc_launch_dependents()
        tl.extra.cuda.gdc_wait()
    row, head = tl.program_id(0), tl.program_id(1)
    hidden = heads * HEAD_DIM
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(qkv_ptr + row * 3 * hidden + head * HEAD_DIM + dims).to(tl.float32) * scale
    keys = kv_ptr + row * 2 * hidden * CAPACITY + head * CAPACITY * HEAD_DIM
    values = keys + hidden * CAPACITY
    length = tl.load(pos_ptr + row) + 1
    out = attend(q, keys, values, length, CAPACITY, HEAD_DIM, BLOCK_T, WHOLE_CACHE, AHEAD)
    tl.store(out_ptr + row * hidden + head * HEAD_DIM + dims, out.to(out_ptr.dtype.element_ty))


def attention_block(batch: int) -> dict:
    """BLOCK_T, num_warps and AHEAD of the attention kernel by batch: the best of benchmarks/kernel_bench.py's sweep
    for a decode's lengths, up to a few hundred slots (decisions.md)."""
    block_t = 256 if batch < 32 else 128
    return {"BLOCK_T": 16 if INTERPRETED else block_t, "num_warps": 4, "AHEAD": 0}


def attention(qkv: torch.Tensor, cache: torch.Tensor, positions: torch.Tensor, blocks: dict | None = None
              ) -> torch.Tensor:
    """Decode attention of rows qkv [B, 3·heads·head_dim] (the QKV kernel's output, its K and V already in the
    cache) over one layer's contiguous cache [B, 2, heads, capacity, head_dim], each row up to its position.
    Returns [B, heads·head_dim], as softmax(q·kᵀ/√d)·v over those slots. `blocks`: other than attention_block's,
    to compare."""
    batch, _, heads, capacity, head_dim = cache.shape
    out = torch.empty(batch, heads * head_dim, dtype=qkv.dtype, device=qkv.device)
    _attention_kernel[(batch, heads)](qkv, cache, positions, out, heads, head_dim**-0.5, CAPACITY=capacity,
                                      HEAD_DIM=head_dim, WHOLE_CACHE=INTERPRETED, **(blocks or attention_block(batch)),
                                      **pdl_options())
    return out

