"""The fused linear of the decode step: y = epilogue(norm(x)·Wᵀ) for up to MAX_BATCH rows, one kernel a linear.

Three kernels share the loop and differ in what they write:

    _linear_kernel   y, and with row_sums_into each program's row sums     dense, fc, proj, the context's linears
    _qkv_kernel      y, and its K and V rows into the cache               QKV
    _argmax_kernel   each row's argmax only, merged across programs       the lm_head of a greedy step

A program reads BLOCK_N weight rows in BLOCK_K-wide strips once and multiplies them with every row of x: one row as
a reduction in fp32, more through tl.dot (rows padded to a tile of 16, 32 or 64, in the activations' dtype), there
over all of K or over one of SPLIT_K chunks of it (split.py). An int8 weight is widened in the loop and the sums
scaled per output channel: x·(q·s)ᵀ = (x·qᵀ)·s.

`Norm` (operands.py; in the kernels `norm`: the layer norm's parameters, row statistics, a fold's column sums)
says how the layer norm before the linear is done: in the loop from a pass over x, in the loop from the row
statistics the kernel before left (`row_stats`), folded into the weight (fold.FoldedLinear), or none. With PDL the
first weight strip, which no earlier kernel writes, is loaded before waiting on the previous kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..weight_only import dequantizing
from ..weights import Linear
from .fold import FoldedLinear
from .launch import DOT_MIN, INTERPRETED, INTERPRETED_BLOCKS, MAX_BATCH, launcher, pdl_options, row_tile
from .operands import LOW_WORD, Epilogue, Norm, check_stats
from .split import chunk, combine, workspace

# From this row tile on, a layer norm done in the loop from a pass over x runs as a kernel of its own instead
# (normalizing 64 rows in every program costs more than the extra kernel: decisions.md)
LN_APART_ROWS = 32


# ---------------------------------------------------------------------------------------------- the kernels' pieces

@triton.constexpr_function
def padded(k):
    return triton.next_power_of_2(k)


@triton.jit
def gelu_tanh(x):
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))


@triton.jit
def _pack_argmax(value, index):
    """(fp32 value, index) as one int64 whose signed order is the value's, then the lower index: the high word the
    float's bits made order-preserving, the low word LOW_WORD - index. An atomic max over these is torch.argmax's
    answer (the first index of the greatest value) across programs."""
    bits = value.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return (ordered.to(tl.int64) << 32) | (LOW_WORD - index.to(tl.int64))


@triton.jit
def kv_slot(rows, K: tl.constexpr, CAPACITY: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Where QKV's outputs `rows` (Q, K, V of K = heads·HEAD_DIM each) go in one row's cache [2, heads, CAPACITY,
    HEAD_DIM] at position 0, and which of them are K or V (Q is not cached)."""
    part = rows // K  # 0 Q, 1 K, 2 V
    head = (rows - part * K) // HEAD_DIM
    dim = rows - part * K - head * HEAD_DIM
    return (part - 1) * K * CAPACITY + head * CAPACITY * HEAD_DIM + dim, part >= 1


@triton.jit
def _strip(ptr, rows, rows_ok, cols, K: tl.constexpr):
    """The [rows, cols] block of a row-major [*, K] matrix, zero outside."""
    return tl.load(ptr + rows[:, None] * K + cols[None, :], mask=rows_ok[:, None] & (cols < K)[None, :], other=0.0)


@triton.jit
def _statistics(x_ptr, ln_ptr, stats_ptr, batch, batch_ok, eps, K: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_K: tl.constexpr):
    """Each row's mean and rstd for the layer norm: summed in order from the partial sums the kernel that wrote x
    stored (stats_ptr, [parts, 2, BLOCK_M]); else from a pass over x (ln_ptr given); else unused zeros."""
    K_PAD: tl.constexpr = padded(K)
    mean = tl.zeros([BLOCK_M], dtype=tl.float32)
    rstd = mean
    if stats_ptr is not None:
        parts = tl.arange(0, (K_PAD + DOT_MIN - 1) // DOT_MIN)  # row_stats_shape's parts for K outputs
        at = stats_ptr + parts[:, None] * (2 * BLOCK_M) + batch[None, :]
        ok = (parts >= 0)[:, None] & batch_ok[None, :]  # the mask in the pointers' shape
        mean = tl.sum(tl.load(at, mask=ok, other=0.0), axis=0) / K
        squares = tl.sum(tl.load(at + BLOCK_M, mask=ok, other=0.0), axis=0) / K
        rstd = 1.0 / tl.sqrt(tl.maximum(squares - mean * mean, 0.0) + eps)
    elif ln_ptr is not None:
        if BLOCK_M == 1:  # every program from the whole row
            cols = tl.arange(0, K_PAD)
            whole = tl.load(x_ptr + cols[None, :], mask=(cols < K)[None, :], other=0.0).to(tl.float32)
            mean = tl.sum(whole, axis=1) / K
            centred = tl.where((cols < K)[None, :], whole - mean[:, None], 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / K + eps)
        else:  # every program in strips, so that the rows need not sit in registers whole
            total = tl.zeros([BLOCK_M], dtype=tl.float32)
            squares = tl.zeros([BLOCK_M], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                part = _strip(x_ptr, batch, batch_ok, k0 + tl.arange(0, BLOCK_K), K).to(tl.float32)
                total += tl.sum(part, axis=1)
                squares += tl.sum(part * part, axis=1)
            mean = total / K
            rstd = 1.0 / tl.sqrt(tl.maximum(squares / K - mean * mean, 0.0) + eps)
    return mean, rstd


@triton.jit
def _normed(x, mask, cols, col_ok, mean, rstd, ln_ptr, K: tl.constexpr):
    """A strip of rows x [rows, BLOCK_K] in fp32, layer-normed with γ, β = ln_ptr[0], ln_ptr[1]; zero where masked."""
    gamma = tl.load(ln_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
    beta = tl.load(ln_ptr + K + cols, mask=col_ok, other=0.0).to(tl.float32)
    return tl.where(mask, (x - mean[:, None]) * rstd[:, None] * gamma[None, :] + beta[None, :], 0.0)


@triton.jit
def _dot_rows(x_ptr, batch, batch_ok, cols, mean, rstd, ln_ptr, K: tl.constexpr):
    """A [rows, BLOCK_K] strip of x for tl.dot in x's dtype: layer-normed in fp32 first where ln_ptr is given."""
    x = _strip(x_ptr, batch, batch_ok, cols, K)
    if ln_ptr is not None:
        col_ok = cols < K
        x = _normed(x.to(tl.float32), batch_ok[:, None] & col_ok[None, :], cols, col_ok, mean, rstd, ln_ptr, K)
    return x.to(x_ptr.dtype.element_ty)


@triton.jit
def _accumulate(x_ptr, w_ptr, w, rows, row_ok, batch, batch_ok, mean, rstd, ln_ptr, k_first, K: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, K_CHUNK: tl.constexpr):
    """Σ over the strips of norm(x)·Wᵀ, fp32 [BLOCK_M, BLOCK_N]; `w` is the first strip, already loaded. One row: a
    reduction over all of K, each strip loaded one ahead by hand. More: tl.dot over the K_CHUNK columns from
    k_first, the loop left to Triton's pipelining."""
    first = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if BLOCK_M == 1:
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + first
            col_ok = cols < K
            x = tl.load(x_ptr + cols[None, :], mask=col_ok[None, :], other=0.0).to(tl.float32)
            if ln_ptr is not None:
                x = _normed(x, col_ok[None, :], cols, col_ok, mean, rstd, ln_ptr, K)
            w_next = _strip(w_ptr, rows, row_ok, cols + BLOCK_K, K)
            acc += tl.sum(w.to(tl.float32) * x, axis=1)[None, :]
            w = w_next
    else:
        dtype = x_ptr.dtype.element_ty
        acc = tl.dot(_dot_rows(x_ptr, batch, batch_ok, k_first + first, mean, rstd, ln_ptr, K), tl.trans(w.to(dtype)),
                     acc)
        for k0 in range(BLOCK_K, K_CHUNK, BLOCK_K):  # a static trip count (k_first is a program's)
            cols = k_first + k0 + first
            strip = _strip(w_ptr, rows, row_ok, cols, K)
            acc = tl.dot(_dot_rows(x_ptr, batch, batch_ok, cols, mean, rstd, ln_ptr, K), tl.trans(strip.to(dtype)),
                         acc)
    return acc


@triton.jit
def _product(x_ptr, w_ptr, norm, ws_ptr, scale_ptr, bias_ptr, M, N, eps, K: tl.constexpr, PDL: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    """This program's BLOCK_N outputs of every row, in fp32: the layer norm, the loop (split: over its chunk of K,
    then the chunks' sum), then a folded layer norm's mean and rstd, the int8 scale and the bias. Returns (acc,
    output features, their mask, rows, the mask of those this program writes: none in a split's other programs)."""
    tl.static_assert(SPLIT_K == 1 or BLOCK_M > 1, "one row's reduction loop does not split K")
    ln_ptr, stats_ptr, sums_ptr = norm
    K_CHUNK: tl.constexpr = chunk(K, SPLIT_K, BLOCK_K)
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # output features
    row_ok = rows < N
    batch = tl.arange(0, BLOCK_M)
    batch_ok = batch < M
    k_first = 0
    if SPLIT_K > 1:
        k_first = tl.program_id(1) * K_CHUNK
    w = _strip(w_ptr, rows, row_ok, k_first + tl.arange(0, BLOCK_K), K)  # nothing the previous kernel writes
    if PDL:
        tl.extra.cuda.gdc_wait()
    mean, rstd = _statistics(x_ptr, ln_ptr, stats_ptr, batch, batch_ok, eps, K, BLOCK_M, BLOCK_K)
    acc = _accumulate(x_ptr, w_ptr, w, rows, row_ok, batch, batch_ok, mean, rstd, ln_ptr, k_first, K, BLOCK_M,
                      BLOCK_N, BLOCK_K, K_CHUNK)
    acc, batch_ok = combine(acc, ws_ptr, rows, row_ok, batch, batch_ok, N, SPLIT_K, BLOCK_M)
    if sums_ptr is not None:
        acc = (acc - mean[:, None] * tl.load(sums_ptr + rows, mask=row_ok, other=0.0)[None, :]) * rstd[:, None]
    if scale_ptr is not None:
        acc *= tl.load(scale_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[None, :]
    if bias_ptr is not None:
        acc += tl.load(bias_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[None, :]
    return acc, rows, row_ok, batch, batch_ok


# ---------------------------------------------------------------------------------------------- the kernels

@triton.jit
def _linear_kernel(x_ptr, w_ptr, y_ptr, bias_ptr, scale_ptr, res_ptr, sums_out_ptr, norm, ws_ptr, M, N, eps,
                   K: tl.constexpr, GELU: tl.constexpr, PDL: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr = 1):
    """y = act(norm(x)·Wᵀ + b) + residual. With sums_out_ptr, each program's sums and sums of squares of its
    outputs of each row as stored, [programs, 2, BLOCK_M]: the next layer norm's statistics (row_stats)."""
    acc, rows, row_ok, batch, batch_ok = _product(x_ptr, w_ptr, norm, ws_ptr, scale_ptr, bias_ptr, M, N, eps, K, PDL,
                                                  BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K)
    if GELU:
        acc = gelu_tanh(acc)
    out = batch[:, None] * N + rows[None, :]
    out_ok = batch_ok[:, None] & row_ok[None, :]
    if res_ptr is not None:
        acc += tl.load(res_ptr + out, mask=out_ok, other=0.0).to(tl.float32)
    y = acc.to(y_ptr.dtype.element_ty)
    tl.store(y_ptr + out, y, mask=out_ok)
    if sums_out_ptr is not None:
        stored = tl.where(out_ok, y.to(tl.float32), 0.0)
        at = sums_out_ptr + tl.program_id(0) * (2 * BLOCK_M) + batch
        tl.store(at, tl.sum(stored, axis=1), mask=batch_ok)
        tl.store(at + BLOCK_M, tl.sum(stored * stored, axis=1), mask=batch_ok)


@triton.jit
def _qkv_kernel(x_ptr, w_ptr, y_ptr, bias_ptr, scale_ptr, kv_ptr, pos_ptr, norm, ws_ptr, M, eps, K: tl.constexpr,
                CAPACITY: tl.constexpr, HEAD_DIM: tl.constexpr, PDL: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr = 1):
    """QKV = norm(x)·Wᵀ + b, [M, 3·K] (one rank: K = heads·HEAD_DIM), its K and V rows also written into one layer's
    cache [M, 2, heads, CAPACITY, HEAD_DIM] at each row's position."""
    N: tl.constexpr = 3 * K
    acc, rows, row_ok, batch, batch_ok = _product(x_ptr, w_ptr, norm, ws_ptr, scale_ptr, bias_ptr, M, N, eps, K, PDL,
                                                  BLOCK_M, BLOCK_N, BLOCK_K, SPLIT_K)
    out = batch[:, None] * N + rows[None, :]
    out_ok = batch_ok[:, None] & row_ok[None, :]
    tl.store(y_ptr + out, acc.to(y_ptr.dtype.element_ty), mask=out_ok)
    slot, is_kv = kv_slot(rows, K, CAPACITY, HEAD_DIM)
    position = tl.load(pos_ptr + batch, mask=batch_ok, other=0)
    slot = batch[:, None] * (2 * K * CAPACITY) + slot[None, :] + position[:, None] * HEAD_DIM
    tl.store(kv_ptr + slot, acc.to(kv_ptr.dtype.element_ty), mask=out_ok & is_kv[None, :])


@triton.jit
def _argmax_kernel(x_ptr, w_ptr, best_ptr, norm, M, N, eps, K: tl.constexpr, PDL: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """No output: each row's greatest value of norm(x)·Wᵀ and its first index, merged into best_ptr (_pack_argmax).
    Never split: the lm_head has blocks enough for every SM."""
    acc, rows, row_ok, batch, batch_ok = _product(x_ptr, w_ptr, norm, None, None, None, M, N, eps, K, PDL, BLOCK_M,
                                                  BLOCK_N, BLOCK_K, 1)
    out_ok = batch_ok[:, None] & row_ok[None, :]
    best, index = tl.max(tl.where(out_ok, acc, float("-inf")), axis=1, return_indices=True,
                         return_indices_tie_break_left=True)
    tl.atomic_max(best_ptr + batch, _pack_argmax(best, tl.program_id(0) * BLOCK_N + index), mask=batch_ok)


KERNELS = {"linear": _linear_kernel, "qkv": _qkv_kernel, "argmax": _argmax_kernel}
# the autotuner's key for each (the fallback for a shape `tune` never saw): the qkv kernel's N is 3·K
AUTOTUNE_KEYS = {"linear": ["BLOCK_M", "N", "K"], "qkv": ["BLOCK_M", "K"], "argmax": ["BLOCK_M", "N", "K"]}


# ---------------------------------------------------------------------------------------------- the launches

def _rows(x: torch.Tensor, width: int) -> torch.Tensor:
    x = x.reshape(-1, width)
    if x.shape[0] > MAX_BATCH:
        raise ValueError(f"the linear kernels take at most {MAX_BATCH} rows, not {x.shape[0]}")
    return x


def _apart(x: torch.Tensor, norm: Norm) -> tuple[torch.Tensor, Norm]:
    """From LN_APART_ROWS, a layer norm the loop would compute from a pass over x runs as a kernel of its own."""
    if norm.layer_norm is not None and norm.statistics is None and row_tile(x.shape[0]) >= LN_APART_ROWS:
        return norm.layer_norm(x), Norm()
    return x, norm


def _launch(name: str, tuning, x: torch.Tensor, weight: torch.Tensor, n: int, *args, **constexprs) -> None:
    """One of KERNELS over x [M, K] and weight [n, K], its block sizes from `tuning` (tuning.TuningTable)."""
    m, k = x.shape
    key = shape_of(m, weight, x)
    if INTERPRETED and not tuning.has(key):
        kernel, blocks = KERNELS[name], INTERPRETED_BLOCKS
    else:
        kernel, blocks = tuning.kernel_for(KERNELS[name], AUTOTUNE_KEYS[name], key)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), meta.get("SPLIT_K", 1))  # noqa: E731
    launcher(kernel, grid)(*args, K=k, **constexprs, **pdl_options(), BLOCK_M=row_tile(m), **blocks)


def shape_of(batch: int, weight: torch.Tensor, x: torch.Tensor) -> tuple:
    """The key of a linear's block sizes for `batch` rows: (row tile, N, K, weight dtype, activation dtype)."""
    return (row_tile(batch), *weight.shape, str(weight.dtype), str(x.dtype))


def linear(x: torch.Tensor, lin: Linear | FoldedLinear, norm: Norm = Norm(), epilogue: Epilogue = Epilogue(), *,
           tuning) -> torch.Tensor:
    """y = act(norm(x)·Wᵀ (· scale) + b) + residual for rows x [M, K], M ≤ MAX_BATCH. Returns [M, N]."""
    n, k = lin.weight.shape
    x = _rows(x, k)
    m = x.shape[0]
    norm.check(lin, m, k)
    if epilogue.row_sums_into is not None:
        check_stats(epilogue.row_sums_into, m, n)
    x, norm = _apart(x, norm)
    y = torch.empty(m, n, dtype=epilogue.out_dtype or x.dtype, device=x.device)
    _launch("linear", tuning, x, lin.weight, n, x, lin.weight, y, lin.bias, lin.scale, epilogue.residual,
            epilogue.row_sums_into, _norm_args(norm, lin), workspace(x.device, n), m, n, norm.eps(lin),
            GELU=epilogue.gelu)
    return y


def qkv_into_cache(x: torch.Tensor, lin: Linear | FoldedLinear, norm: Norm, cache: torch.Tensor,
                   positions: torch.Tensor, *, tuning) -> torch.Tensor:
    """QKV = norm(x)·Wᵀ (· scale) + b, [M, 3·H], its K and V rows also written into one layer's contiguous cache
    [M, 2, heads, capacity, head_dim] at each row's position (one rank: H = heads·head_dim)."""
    n, k = lin.weight.shape
    x = _rows(x, k)
    m = x.shape[0]
    norm.check(lin, m, k)
    if not (cache.is_contiguous() and cache.shape[0] == m and n == 3 * k == 3 * cache.shape[2] * cache.shape[4]):
        raise ValueError(f"a QKV of {n} outputs over {k} inputs into a contiguous cache [{m}, 2, heads, capacity, "
                         f"head_dim] of heads·head_dim = {k}, not {tuple(cache.shape)}")
    x, norm = _apart(x, norm)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _launch("qkv", tuning, x, lin.weight, n, x, lin.weight, y, lin.bias, lin.scale, cache, positions,
            _norm_args(norm, lin), workspace(x.device, n), m, norm.eps(lin), CAPACITY=cache.shape[3],
            HEAD_DIM=cache.shape[4])
    return y


def lm_head_argmax(x: torch.Tensor, weight: torch.Tensor, norm: Norm, best: torch.Tensor, *, tuning) -> None:
    """Each row's argmax of norm(x)·Wᵀ merged into `best` (argmax_slots; argmax_of reads it); the logits never
    written."""
    n, k = weight.shape
    x = _rows(x, k)
    m = x.shape[0]
    norm.check(Linear(weight), m, k)
    x, norm = _apart(x, norm)
    _launch("argmax", tuning, x, weight, n, x, weight, best, _norm_args(norm, None), m, n, norm.eps(None))


def _norm_args(norm: Norm, linear) -> tuple:
    """The kernels' `norm`: (layer-norm parameters, row statistics, a folded linear's column sums), each or None."""
    return (norm.layer_norm.params if norm.layer_norm is not None else None, norm.statistics,
            getattr(linear, "sums", None))


def context_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   scale: torch.Tensor | None = None, out_dtype: torch.dtype | None = None, *, tuning) -> torch.Tensor:
    """A linear of the context phase (ParallelGPT2's context_linear): through the linear kernel where its tokens
    fit one row tile and `tune` chose its blocks (an int8 weight widened in the kernel instead of dequantized
    whole, no cuBLAS call and so no cuBLAS workspace); else dequantized and F.linear, as without the kernels."""
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] <= MAX_BATCH and tuning.has(shape_of(rows.shape[0], weight, rows)):
        y = linear(rows, Linear(weight, bias, scale), epilogue=Epilogue(out_dtype=out_dtype), tuning=tuning)
        return y.view(*x.shape[:-1], weight.shape[0])
    out = (F.linear if scale is None else dequantizing(F.linear, scale))(x, weight, bias)
    return out if out_dtype is None else out.to(out_dtype)
