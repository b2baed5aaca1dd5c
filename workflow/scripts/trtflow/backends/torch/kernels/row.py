"""One row's decode step in three kernels a layer (step.py's five): dense rides on attention's kernel and proj on
fc's, each split along the dimension the pair shares, their partial products summed in fp32 by atomic adds.

    _qkv_row_kernel       the layer's input (the embedding, or the last layer's output), ln_1, QKV, K and V into the
                          cache
    _attend_dense_kernel  a program a (head, strip of dense's outputs): the head's attention over the filled slots, then
                          its 64 columns of dense, added into the attention sum
    _mlp_kernel           the residual after attention, ln_2, a strip of fc's features and their GELU, then proj's
                          columns for those features, added into the MLP sum
    _sum_row_kernel       the last layer's output for ln_f and the lm_head

The kernel after a sum adds the bias and the residual and rounds once, as step.py's epilogues do. Each kernel loads
every weight it reads before waiting on the kernel before it (PDL), so that only activations are read after the wait.

The row's state between kernels (RowBuffers):
    stream [2, H], the activations' dtype: [0] the residual after attention (the MLP kernel's program 0 writes it),
                   [1] the layer's input (the QKV kernel's program 0)
    sums [2, H] fp32: [0] the attention sum (zeroed by the QKV kernel, added into by the attention kernel),
                      [1] the MLP sum (zeroed by the attention kernel, added into by the MLP kernel)
Neither needs zeroing before a step: each sum is zeroed by the kernel before the one that adds into it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..weights import GPT2Weights, Layer
from .attention import attend
from .launch import INTERPRETED, pdl_options
from .linear import gelu_tanh, kv_slot

# (weights a program, num_warps) of each kernel: the best of benchmarks/row_sweep.py at gpt2-medium's shape (decisions.md)
BLOCKS = {"qkv": (8, 4), "attention": (256, 8), "mlp": (16, 8)}
ATTENTION_SLOTS = 8 if INTERPRETED else 128  # cache slots an attention loop iteration reads
# TRTFLOW_ROW_KERNELS=0: one row runs step.py's five kernels a layer instead, to compare
ENABLED = os.environ.get("TRTFLOW_ROW_KERNELS") != "0"


@triton.jit
def _vector(ptr, cols, ok):
    """ptr[cols] in fp32, zeros where masked or where ptr is None."""
    if ptr is None:
        return tl.zeros(cols.shape, dtype=tl.float32)
    return tl.load(ptr + cols, mask=ok, other=0.0).to(tl.float32)


@triton.jit
def _scaled(x, scale_ptr, cols, ok):
    """x times an int8 weight's per-channel scales at cols, where scale_ptr is given."""
    if scale_ptr is not None:
        x *= _vector(scale_ptr, cols, ok)
    return x


@triton.jit
def _residual(sum_ptr, bias_ptr, residual_ptr, cols, ok):
    """A linear's summed partial products + its bias + the residual it adds to, in fp32 (rounded by the caller)."""
    return _vector(sum_ptr, cols, ok) + _vector(bias_ptr, cols, ok) + _vector(residual_ptr, cols, ok)


@triton.jit
def _normed_row(x, cols, ok, ln_ptr, eps, H: tl.constexpr):
    """The layer norm of one row x (fp32, zero where masked) with γ, β = ln_ptr[0], ln_ptr[1]."""
    mean = tl.sum(x, axis=0) / H
    centred = tl.where(ok, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / H + eps)
    return centred * rstd * _vector(ln_ptr, cols, ok) + _vector(ln_ptr + H, cols, ok)


@triton.jit
def _qkv_row_kernel(stream_ptr, sums_ptr, proj_bias_ptr, wte_ptr, wpe_ptr, token_ptr, ln_ptr, w_ptr, bias_ptr,
                    scale_ptr, qkv_ptr, kv_ptr, pos_ptr, eps, H: tl.constexpr, H_PAD: tl.constexpr,
                    CAPACITY: tl.constexpr, HEAD_DIM: tl.constexpr, PDL: tl.constexpr, BLOCK_N: tl.constexpr):
    """BLOCK_N of QKV's 3·H outputs from ln_1 of the layer's input: the embedding of the token at its position
    (wte_ptr given, the first layer), else the last layer's MLP sum + proj's bias + its residual after attention.
    Program 0 stores the input (stream[1]) and zeroes the attention sum; K and V go into the cache at the position."""
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < 3 * H
    cols = tl.arange(0, H_PAD)
    ok = cols < H
    w = tl.load(w_ptr + rows[:, None] * H + cols[None, :], mask=row_ok[:, None] & ok[None, :], other=0.0)
    if PDL:
        tl.extra.cuda.gdc_wait()
    position = tl.load(pos_ptr)
    if wte_ptr is not None:
        x = _vector(wte_ptr + tl.load(token_ptr) * H, cols, ok) + _vector(wpe_ptr + position * H, cols, ok)
    else:
        x = _residual(sums_ptr + H, proj_bias_ptr, stream_ptr, cols, ok)
    stored = x.to(stream_ptr.dtype.element_ty)
    if tl.program_id(0) == 0:
        tl.store(stream_ptr + H + cols, stored, mask=ok)
        tl.store(sums_ptr + cols, tl.zeros([H_PAD], dtype=tl.float32), mask=ok)
    x = _normed_row(stored.to(tl.float32), cols, ok, ln_ptr, eps, H)
    acc = tl.sum(w.to(tl.float32) * x[None, :], axis=1)
    acc = _scaled(acc, scale_ptr, rows, row_ok) + _vector(bias_ptr, rows, row_ok)
    tl.store(qkv_ptr + rows, acc.to(qkv_ptr.dtype.element_ty), mask=row_ok)
    slot, is_kv = kv_slot(rows, H, CAPACITY, HEAD_DIM)
    tl.store(kv_ptr + slot + position * HEAD_DIM, acc.to(kv_ptr.dtype.element_ty), mask=row_ok & is_kv)


@triton.jit
def _attend_dense_kernel(qkv_ptr, kv_ptr, pos_ptr, w_ptr, scale_ptr, sums_ptr, softmax_scale, H: tl.constexpr,
                         H_PAD: tl.constexpr, CAPACITY: tl.constexpr, HEAD_DIM: tl.constexpr, PDL: tl.constexpr,
                         BLOCK_P: tl.constexpr, BLOCK_T: tl.constexpr, WHOLE_CACHE: tl.constexpr):
    """Program (head, strip): the head's attention output (rounded as stored) times dense's BLOCK_P rows × the head's
    HEAD_DIM columns, added into the attention sum. Program (0, 0) zeroes the MLP sum."""
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
    head, strip = tl.program_id(0), tl.program_id(1)
    outs = strip * BLOCK_P + tl.arange(0, BLOCK_P)
    out_ok = outs < H
    dims = tl.arange(0, HEAD_DIM)
    w = tl.load(w_ptr + outs[:, None] * H + head * HEAD_DIM + dims[None, :], mask=out_ok[:, None], other=0.0)
    if PDL:
        tl.extra.cuda.gdc_wait()
    if (head == 0) & (strip == 0):
        cols = tl.arange(0, H_PAD)
        tl.store(sums_ptr + H + cols, tl.zeros([H_PAD], dtype=tl.float32), mask=cols < H)
    q = tl.load(qkv_ptr + head * HEAD_DIM + dims).to(tl.float32) * softmax_scale
    keys = kv_ptr + head * CAPACITY * HEAD_DIM
    values = keys + H * CAPACITY
    length = tl.load(pos_ptr) + 1
    out = attend(q, keys, values, length, CAPACITY, HEAD_DIM, BLOCK_T, WHOLE_CACHE)
    out = out.to(qkv_ptr.dtype.element_ty).to(tl.float32)  # rounded as the attention kernel stores it
    part = _scaled(tl.sum(w.to(tl.float32) * out[None, :], axis=1), scale_ptr, outs, out_ok)
    tl.atomic_add(sums_ptr + outs, part, mask=out_ok, sem="relaxed")


@triton.jit
def _mlp_kernel(stream_ptr, sums_ptr, dense_bias_ptr, ln_ptr, fc_ptr, fc_bias_ptr, fc_scale_ptr, proj_ptr,
                proj_scale_ptr, eps, H: tl.constexpr, H_PAD: tl.constexpr, INNER: tl.constexpr, PDL: tl.constexpr,
                BLOCK_F: tl.constexpr):
    """BLOCK_F of fc's features from ln_2 of the residual after attention (the attention sum + dense's bias + the
    layer's input; program 0 stores it, stream[0]), their GELU rounded as stored, times proj's columns for them,
    added into the MLP sum."""
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
    feats = tl.program_id(0) * BLOCK_F + tl.arange(0, BLOCK_F)
    f_ok = feats < INNER
    cols = tl.arange(0, H_PAD)
    ok = cols < H
    fc = tl.load(fc_ptr + feats[:, None] * H + cols[None, :], mask=f_ok[:, None] & ok[None, :], other=0.0)
    proj = tl.load(proj_ptr + cols[:, None] * INNER + feats[None, :], mask=ok[:, None] & f_ok[None, :], other=0.0)
    if PDL:
        tl.extra.cuda.gdc_wait()
    h = _residual(sums_ptr, dense_bias_ptr, stream_ptr + H, cols, ok)
    stored = h.to(stream_ptr.dtype.element_ty)
    if tl.program_id(0) == 0:
        tl.store(stream_ptr + cols, stored, mask=ok)
    x = _normed_row(stored.to(tl.float32), cols, ok, ln_ptr, eps, H)
    f = tl.sum(fc.to(tl.float32) * x[None, :], axis=1)
    f = _scaled(f, fc_scale_ptr, feats, f_ok) + _vector(fc_bias_ptr, feats, f_ok)
    g = tl.where(f_ok, gelu_tanh(f).to(stream_ptr.dtype.element_ty).to(tl.float32), 0.0)
    part = _scaled(tl.sum(proj.to(tl.float32) * g[None, :], axis=1), proj_scale_ptr, cols, ok)
    tl.atomic_add(sums_ptr + H + cols, part, mask=ok, sem="relaxed")


@triton.jit
def _sum_row_kernel(stream_ptr, sums_ptr, proj_bias_ptr, out_ptr, H: tl.constexpr, H_PAD: tl.constexpr,
                    PDL: tl.constexpr):
    """The last layer's output: its MLP sum + proj's bias + its residual after attention, rounded as stored."""
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
        tl.extra.cuda.gdc_wait()
    cols = tl.arange(0, H_PAD)
    ok = cols < H
    h = _residual(sums_ptr + H, proj_bias_ptr, stream_ptr, cols, ok)
    tl.store(out_ptr + cols, h.to(out_ptr.dtype.element_ty), mask=ok)


@dataclass(frozen=True)
class RowBuffers:
    """One row's state between the kernels (the module's docstring): stream [2, H] and sums [2, H] fp32."""

    stream: torch.Tensor
    sums: torch.Tensor

    @classmethod
    def empty(cls, hidden: int, dtype: torch.dtype, device: torch.device) -> RowBuffers:
        return cls(torch.empty(2, hidden, dtype=dtype, device=device),
                   torch.empty(2, hidden, dtype=torch.float32, device=device))


def row_layers(weights: GPT2Weights, token: torch.Tensor, position: torch.Tensor, caches: list[torch.Tensor],
               heads: int) -> torch.Tensor:
    """h [1, H] before ln_f for one row (token [1] at position [1]) through every layer, each layer's K and V written
    into its cache [1, 2, heads, capacity, head_dim]."""
    hidden = weights.wte.shape[1]
    head_dim, capacity = hidden // heads, caches[0].shape[3]
    if not (token.numel() == 1 and all(c.is_contiguous() and c.shape[:3] == (1, 2, heads) and c.shape[4] == head_dim
                                       for c in caches)):
        raise ValueError(f"the row kernels take one row over contiguous caches [1, 2, {heads}, capacity, {head_dim}]")
    dtype, device = weights.wte.dtype, weights.wte.device
    state = RowBuffers.empty(hidden, dtype, device)
    qkv = torch.empty(3 * hidden, dtype=dtype, device=device)
    pad = triton.next_power_of_2(hidden)
    pdl = pdl_options()
    previous: Layer | None = None
    for layer, cache in zip(weights.layers, caches, strict=True):
        _qkv(layer, previous, weights, state, qkv, cache, token, position, hidden, pad, pdl)
        block_p, warps = BLOCKS["attention"]
        _attend_dense_kernel[(heads, triton.cdiv(hidden, block_p))](
            qkv, cache, position, layer.dense.weight, layer.dense.scale, state.sums, head_dim**-0.5, H=hidden,
            H_PAD=pad, CAPACITY=capacity, HEAD_DIM=head_dim, BLOCK_P=block_p, BLOCK_T=ATTENTION_SLOTS,
            WHOLE_CACHE=INTERPRETED, num_warps=warps, **pdl)
        inner = layer.fc.weight.shape[0]
        block_f, warps = BLOCKS["mlp"]
        _mlp_kernel[(triton.cdiv(inner, block_f),)](
            state.stream, state.sums, layer.dense.bias, layer.ln_2.params, layer.fc.weight, layer.fc.bias,
            layer.fc.scale, layer.proj.weight, layer.proj.scale, layer.ln_2.eps, H=hidden, H_PAD=pad,
            INNER=inner, BLOCK_F=block_f, num_warps=warps, **pdl)
        previous = layer
    h = torch.empty(1, hidden, dtype=dtype, device=device)
    _sum_row_kernel[(1,)](state.stream, state.sums, previous.proj.bias, h, H=hidden, H_PAD=pad, **pdl)
    return h


def _qkv(layer: Layer, previous: Layer | None, weights: GPT2Weights, state: RowBuffers, qkv: torch.Tensor,
         cache: torch.Tensor, token: torch.Tensor, position: torch.Tensor, hidden: int, pad: int, pdl: dict) -> None:
    """The QKV kernel of `layer`, its input the embedding where `previous` is None."""
    block_n, warps = BLOCKS["qkv"]
    first = previous is None
    _qkv_row_kernel[(triton.cdiv(3 * hidden, block_n),)](
        state.stream, state.sums, None if first else previous.proj.bias, weights.wte if first else None,
        weights.wpe if first else None, token, layer.ln_1.params, layer.qkv.weight, layer.qkv.bias,
        layer.qkv.scale, qkv, cache, position, layer.ln_1.eps, H=hidden, H_PAD=pad, CAPACITY=cache.shape[3],
        HEAD_DIM=cache.shape[4], BLOCK_N=block_n, num_warps=warps, **pdl)
