"""Hand-written Triton kernels for the decode step of batches up to MAX_BATCH (`torch_compile: triton`): each linear
of a layer is one kernel with its neighbours fused in, attention is one kernel, the lm_head takes the argmax and one
more kernel does the step's bookkeeping, so a step is 5 kernels a layer and a few more (127 a step at batch 1 for
gpt2-medium; 165 when attention, the cache write, argmax and bookkeeping were torch's).

    ln_1 → QKV (+bias) → K, V into the cache   gemv(ln=…, kv=…)   the layer norm in the kernel (below)
    attention over each row's filled slots     attention           one program per (row, head), online softmax
    attention dense (+bias, +h)                gemv(residual=…)   the residual added in the epilogue
    ln_2 → fc (+bias, GELU)                    gemv(ln=…, gelu=True)
    MLP proj (+bias, +h)                       gemv(residual=…)
    ln_f → lm_head → argmax                    gemv(ln=…, argmax_into=…)   the logits never written
    the step's bookkeeping                     finish_step         next tokens, positions, finished rows

A layer norm before a matmul (norm_way): at batch 1 every program computes its statistics from the whole row and
normalizes each strip of x. From 2 rows the kernels that write the residual stream (dense, proj) leave each
program's partial sums of its rows (`row_stats`) for the next layer norm, which at 2-16 rows normalizes each strip
in the loop. From FOLD_ROWS (32), with fp16/bf16 weights, QKV's and fc's layer norms are folded into their weights
(`folded`: the loop a plain matmul of x as stored, mean and rstd applied in the epilogue); int8 weights run each
layer norm there as a kernel of its own (LN_APART_ROWS, 32). The tied lm_head is not folded: its ln_f takes the
statistics below 32 rows and is a kernel apart from there; the first layer's ln_1 (no kernel before it leaves
statistics) makes a pass over the rows below 32 and is a kernel apart from there.

Each gemv program reads BLOCK_N full weight rows in BLOCK_K-wide strips once and multiplies them with every one of
the batch's rows (one row as a reduction; more through tl.dot on tensor cores, the rows padded to a tile of 16, 32
or 64), keeping the running sums in fp32. A weight-only int8 weight is widened in the kernel and the sums scaled
per output channel, as weight_only.dequantizing does: x·(q·s)ᵀ = (x·qᵀ)·s. tp 1, a contiguous [out, in] weight.

On Hopper the kernels launch with programmatic dependent launch (PDL): each lets the next one start at once, and
the next loads its first weight strip (nothing the previous kernel writes) before it waits for the previous one,
so the weights' DRAM latency and the launch overlap the previous kernel's tail (bs 1, in 60 / out 100 on the
H200: 52.2 ms with PDL, 60.6 ms without).

Block sizes are chosen per (row tile, shape) by `tune`, which times each candidate as the step runs it (over all
layers' weights in a CUDA graph). The engine rule tunes at build for every row tile up to its max_batch_size
(`covering`; with weight-only int8 also the context's, whose int8 linears run here too: `context_linear`) and
records the choices in the engine (`tuning`); a job that opens the engine hands them back (`use_tuning`) and so
starts without timing a single configuration. A shape never tuned falls back to Triton's autotuner at first use.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .model import TANH_GELUS
from .weight_only import SCALE, dequantizing

MAX_BATCH = 64  # one tl.dot tile of rows: every weight read once per step (a GEMM of a single row tile)
NO_ARGMAX = -(2**63)  # an empty argmax slot: below every packed (value, index)
LOW_WORD = tl.constexpr(2**32 - 1)  # a packed argmax's low word holds LOW_WORD - index (_pack_argmax)


@triton.jit
def _gelu_tanh(x):
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))


@triton.jit
def _pack_argmax(value, index):
    """(fp32 value, index) as one int64 whose signed order is the value's, then the lower index: the high word is
    the float's bits made order-preserving (negative floats' magnitude bits flipped), the low word 2³²-1-index. An
    atomic max over these is torch.argmax's answer (the first index of the greatest value) across programs."""
    bits = value.to(tl.int32, bitcast=True)
    ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return (ordered.to(tl.int64) << 32) | (LOW_WORD - index.to(tl.int64))


# The candidates `tune` times: from benchmarks/kernel_bench.py's sweeps on the H200, the configurations that were best
# or within a few percent of it for some linear (fp16 and int8 at batch 1, fp16 at batches 8 and 64), and narrow
# strips for small models. Each is compiled at build for every shape: fewer candidates, a shorter build.
ROW_BLOCKS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)  # batch 1: a row reduction
              for n, k, w in ((1, 1024, 2), (1, 1024, 4), (2, 1024, 4), (4, 1024, 8), (4, 512, 2), (4, 512, 4),
                              (4, 512, 8), (16, 128, 4), (32, 128, 4), (64, 128, 8))]
DOT_BLOCKS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)  # batches 2-64: tl.dot tiles
              for n, k, w, s in ((16, 128, 4, 4), (16, 256, 4, 4), (16, 512, 8, 3), (32, 128, 4, 4), (64, 64, 4, 3),
                                 (64, 128, 8, 4))]
BLOCKS = ROW_BLOCKS + DOT_BLOCKS
_DOT = {id(config) for config in DOT_BLOCKS}
DOT_MIN = 16  # tl.dot's smallest tile side: a batch of 2-15 rows is padded to 16 (masked loads, tensor cores)
DOT_TILE_LIMIT = 8192  # weight elements per strip on the tl.dot path (more spill registers)
# From this row tile on, a layer norm the step does not fold (int8 weights, ln_f, the first layer's ln_1) runs as
# its own kernel, not in the matmul's loop: normalizing 64 rows of every strip costs the loop more than a kernel
# apart (batch 64 on the H200, benchmarks/kernel_bench.py: QKV 11.9 µs apart vs 17.5 from row_stats, fc 11.2 vs
# 14.4, lm_head 35.0 vs 48.9). Below it the step passes row statistics (batch 16: QKV 8.5 vs 9.0 µs with a pass
# over the rows in every program, fc 8.9 vs 9.5).
LN_APART_ROWS = 32
# From this row tile on, with fp16/bf16 weights, the layer norms before QKV and fc are folded into their weights
# (`folded`, norm_way). Below it they normalize in the loop from the statistics, which measured faster end to end at
# batch 8 on the H200 (benchmarks/gpu_speed.py, same command: 8,164 tok/s vs 7,871 folded), though the folded
# kernels alone were faster at 16 rows too (kernel_bench: QKV 8.4 vs 8.5 µs, fc 8.5 vs 9.0).
FOLD_ROWS = 32


def _fitting(configs, named_args, **kwargs):
    """The configurations worth timing: those of the batch's path (ROW_BLOCKS at batch 1, DOT_BLOCKS above) whose
    strips are no wider than the input rounded up to 128 (wider ones only load masked zeros: for a small model, a
    few configurations instead of all, at build) and, on the tl.dot path, hold at most DOT_TILE_LIMIT weights."""
    widest = max(128, kwargs["K_PAD"])
    dot = kwargs["BLOCK_M"] > 1
    return [c for c in configs if (id(c) in _DOT) == dot and c.kwargs["BLOCK_K"] <= widest and (
        not dot or c.kwargs["BLOCK_N"] * c.kwargs["BLOCK_K"] <= DOT_TILE_LIMIT)]


@triton.jit
def _normed(x, mask, cols, col_ok, mean, rstd, ln_w_ptr, ln_b_ptr):
    """A strip of rows x [rows, BLOCK_K] in fp32, layer-normed: (x - mean)·rstd·γ + β, zero where masked."""
    x = (x - mean[:, None]) * rstd[:, None] * tl.load(ln_w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :] \
        + tl.load(ln_b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    return tl.where(mask, x, 0.0)


@triton.jit
def _dot_rows(x_ptr, batch, batch_ok, cols, col_ok, K, mean, rstd, ln_w_ptr, ln_b_ptr, LN: tl.constexpr):
    """A [rows, BLOCK_K] strip of the activations for tl.dot, in their dtype: layer-normed in fp32 first with LN."""
    mask = batch_ok[:, None] & col_ok[None, :]
    x = tl.load(x_ptr + batch[:, None] * K + cols[None, :], mask=mask, other=0.0)
    if LN:
        x = _normed(x.to(tl.float32), mask, cols, col_ok, mean, rstd, ln_w_ptr, ln_b_ptr)
    return x.to(x_ptr.dtype.element_ty)


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, b_ptr, res_ptr, y_ptr, ln_w_ptr, ln_b_ptr, scale_ptr, kv_ptr, pos_ptr, best_ptr,
                 stats_in_ptr, stats_out_ptr, sums_ptr, capacity, M, N, eps, K: tl.constexpr, LN: tl.constexpr,
                 FOLDED: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, GELU: tl.constexpr,
                 SCALED: tl.constexpr, KV: tl.constexpr, HEAD_DIM: tl.constexpr, ARGMAX: tl.constexpr,
                 STATS_IN: tl.constexpr, STATS_OUT: tl.constexpr, PARTS: tl.constexpr, PDL: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, K_PAD: tl.constexpr):
    """A program computes BLOCK_N outputs of every row. BLOCK_M 1: a row reduction in fp32, the weight strips
    loaded one ahead of their use by hand. BLOCK_M ≥ DOT_MIN: tl.dot of the rows (layer-normed in fp32, then in the
    activations' dtype, as a layer norm module would return them) with the weight strip in that dtype; after the
    first strip the loop is left to Triton's software pipelining (num_stages strips in flight: at batch 64 on the
    H200 fc 9.7 µs, 15.2 with each strip loaded one ahead by hand).

    The first weight strip is loaded before anything the previous kernel writes is read. With PDL (programmatic
    dependent launch, Hopper on), that load runs while the previous kernel finishes: the kernel lets the next one
    launch at once, and waits (gdc_wait) only before its first read of an activation, a position or the argmax
    slots.

    Row statistics (tl.dot path): with STATS_OUT the kernel also stores, per program, each row's sum and sum of
    squares of its BLOCK_N outputs (as stored, rounded to y's dtype) into stats_out [PARTS, 2, BLOCK_M]; with
    STATS_IN the layer norm's mean and variance come from such partial sums of x's rows (the kernel that wrote x)
    instead of a pass over x in every program, or a layer-norm kernel of its own.

    FOLDED (with STATS_IN): the layer norm folded into the weight, so that the loop is that of a plain matmul of x
    as stored: w holds W∘γ, sums its rows' sums Σ_k (W∘γ), b W·β + b, and the epilogue takes
    LN(x)·Wᵀ + b = rstd·(x·(W∘γ)ᵀ − mean·Σ_k (W∘γ)) + W·β + b."""
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # output features
    row_ok = rows < N
    batch = tl.arange(0, BLOCK_M)
    batch_ok = batch < M
    first = tl.arange(0, BLOCK_K)
    w = tl.load(w_ptr + rows[:, None] * K + first[None, :], mask=row_ok[:, None] & (first < K)[None, :], other=0.0)
    if PDL:
        tl.extra.cuda.gdc_wait()
    mean = tl.zeros([BLOCK_M], dtype=tl.float32)
    rstd = mean
    if STATS_IN:  # each row's statistics, summed from the partial sums the kernel that wrote x stored, in order
        parts = tl.arange(0, PARTS)
        at = stats_in_ptr + parts[:, None] * (2 * BLOCK_M) + batch[None, :]
        ok = (parts < PARTS)[:, None] & batch_ok[None, :]  # the mask in the pointers' shape
        mean = tl.sum(tl.load(at, mask=ok, other=0.0), axis=0) / K
        squares = tl.sum(tl.load(at + BLOCK_M, mask=ok, other=0.0), axis=0) / K
        rstd = 1.0 / tl.sqrt(tl.maximum(squares - mean * mean, 0.0) + eps)
    elif LN:  # each row's statistics
        if BLOCK_M == 1:  # recomputed by every program from the whole row
            all_cols = tl.arange(0, K_PAD)
            whole = tl.load(x_ptr + all_cols[None, :], mask=(all_cols < K)[None, :], other=0.0).to(tl.float32)
            mean = tl.sum(whole, axis=1) / K
            centred = tl.where((all_cols < K)[None, :], whole - mean[:, None], 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / K + eps)
        else:  # recomputed by every program in strips, so that the rows need not sit in registers whole
            total = tl.zeros([BLOCK_M], dtype=tl.float32)
            squares = tl.zeros([BLOCK_M], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                cols = k0 + tl.arange(0, BLOCK_K)
                part = tl.load(x_ptr + batch[:, None] * K + cols[None, :],
                               mask=batch_ok[:, None] & (cols < K)[None, :], other=0.0).to(tl.float32)
                total += tl.sum(part, axis=1)
                squares += tl.sum(part * part, axis=1)
            mean = total / K
            rstd = 1.0 / tl.sqrt(tl.maximum(squares / K - mean * mean, 0.0) + eps)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if BLOCK_M == 1:
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + first
            col_ok = cols < K
            x = tl.load(x_ptr + cols[None, :], mask=col_ok[None, :], other=0.0).to(tl.float32)
            if LN:
                x = _normed(x, col_ok[None, :], cols, col_ok, mean, rstd, ln_w_ptr, ln_b_ptr)
            ahead = cols + BLOCK_K
            w_next = tl.load(w_ptr + rows[:, None] * K + ahead[None, :],
                             mask=row_ok[:, None] & (ahead < K)[None, :], other=0.0)
            acc += tl.sum(w.to(tl.float32) * x, axis=1)[None, :]
            w = w_next
    else:
        dtype = x_ptr.dtype.element_ty
        x = _dot_rows(x_ptr, batch, batch_ok, first, first < K, K, mean, rstd, ln_w_ptr, ln_b_ptr, LN)
        acc = tl.dot(x, tl.trans(w.to(dtype)), acc)
        for k0 in range(BLOCK_K, K, BLOCK_K):
            cols = k0 + first
            col_ok = cols < K
            strip = tl.load(w_ptr + rows[:, None] * K + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                            other=0.0)
            x = _dot_rows(x_ptr, batch, batch_ok, cols, col_ok, K, mean, rstd, ln_w_ptr, ln_b_ptr, LN)
            acc = tl.dot(x, tl.trans(strip.to(dtype)), acc)
    if FOLDED:
        acc = (acc - mean[:, None] * tl.load(sums_ptr + rows, mask=row_ok, other=0.0)[None, :]) * rstd[:, None]
    if SCALED:
        acc *= tl.load(scale_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[None, :]
    if GELU:
        acc = _gelu_tanh(acc)
    out = batch[:, None] * N + rows[None, :]
    out_ok = batch_ok[:, None] & row_ok[None, :]
    if HAS_RES:
        acc += tl.load(res_ptr + out, mask=out_ok, other=0.0).to(tl.float32)
    if ARGMAX:  # no output: each row's greatest value and its first index, merged across programs (_pack_argmax)
        best, index = tl.max(tl.where(out_ok, acc, float("-inf")), axis=1, return_indices=True,
                             return_indices_tie_break_left=True)
        tl.atomic_max(best_ptr + batch, _pack_argmax(best, tl.program_id(0) * BLOCK_N + index), mask=batch_ok)
    else:
        y = acc.to(y_ptr.dtype.element_ty)
        tl.store(y_ptr + out, y, mask=out_ok)
        if STATS_OUT:  # this program's share of each row's sum and sum of squares as stored, for the next LN
            stored = tl.where(out_ok, y.to(tl.float32), 0.0)
            at = stats_out_ptr + tl.program_id(0) * (2 * BLOCK_M) + batch
            tl.store(at, tl.sum(stored, axis=1), mask=batch_ok)
            tl.store(at + BLOCK_M, tl.sum(stored * stored, axis=1), mask=batch_ok)
    if KV:  # QKV's K and V rows also into the cache [B, 2, heads, capacity, HEAD_DIM] at each row's position
        hidden = N // 3
        part = rows // hidden  # 0 Q, 1 K, 2 V
        head = (rows - part * hidden) // HEAD_DIM
        dim = rows - part * hidden - head * HEAD_DIM
        position = tl.load(pos_ptr + batch, mask=batch_ok, other=0)
        slot = batch[:, None] * (2 * hidden * capacity) + ((part - 1) * hidden * capacity + head * capacity * HEAD_DIM
                                                           + dim)[None, :] + position[:, None] * HEAD_DIM
        tl.store(kv_ptr + slot, acc.to(kv_ptr.dtype.element_ty), mask=out_ok & (part >= 1)[None, :])


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
# Programmatic dependent launch: None = where the GPU has it (Hopper on); False (or TRTFLOW_TRITON_PDL=0) to compare
PDL: bool | None = False if os.environ.get("TRTFLOW_TRITON_PDL") == "0" else None


def _pdl() -> dict:
    """The kernels' PDL flag and the launch option that goes with it."""
    on = PDL if PDL is not None else _has_pdl()
    return {"PDL": on, "launch_pdl": True} if on else {"PDL": False}


@functools.cache
def _has_pdl() -> bool:
    return not INTERPRETED and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


# keyed by the row tile, not the batch: one tuning serves every batch that pads to the same tile
_tuned_gemv_kernel = triton.autotune(configs=BLOCKS, key=["BLOCK_M", "N", "K"],
                                     prune_configs_by={"early_config_prune": _fitting})(_gemv_kernel)


def row_tile(batch: int) -> int:
    """The kernel's BLOCK_M for a batch: 1 (a row reduction), else the batch padded to a power of two ≥ DOT_MIN."""
    return 1 if batch == 1 else max(DOT_MIN, triton.next_power_of_2(batch))


def covering(batch_sizes: list[int]) -> list[int]:
    """Batch sizes whose tuning covers every batch up to the largest of `batch_sizes`: those given and the largest
    of each row tile below (the tuner keys on the tile), so that no job meets a batch tuned at none of them."""
    top = max(batch_sizes)
    tiles = {row_tile(b) for b in range(1, min(top, MAX_BATCH) + 1)}
    return sorted(set(batch_sizes) | {tile for tile in tiles if tile <= top})


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, residual: torch.Tensor | None = None,
         gelu: bool = False, ln: tuple[torch.Tensor, torch.Tensor, float] | None = None,
         out_dtype: torch.dtype | None = None, scale: torch.Tensor | None = None,
         kv: tuple[torch.Tensor, torch.Tensor] | None = None, argmax_into: torch.Tensor | None = None,
         ln_stats: torch.Tensor | None = None, stats_into: torch.Tensor | None = None,
         ln_folded: tuple[torch.Tensor, float] | None = None) -> torch.Tensor:
    """y = act(LN(x) · Wᵀ (· scale) + b) + residual for rows x [M, K] (M ≤ MAX_BATCH); weight [N, K] in the
    compute dtype, or int8 with its per-channel `scale` [N]. Returns [M, N]. With `kv` = (one layer's contiguous
    cache [M, 2, heads, capacity, head_dim], positions [M]), y is a QKV projection whose K and V parts are also
    written into the cache at each row's position (the cache write fused into the matmul's epilogue). With
    `argmax_into` (int64 [M], holding NO_ARGMAX), y is not written: each row's argmax over the N outputs is merged
    into it, packed (`argmax_of` reads it). Row statistics, for two or more rows (`row_stats` makes the buffer):
    `stats_into` takes the partial sums of y's rows, and `ln_stats`, those of x's rows written by the gemv that
    produced x, gives the layer norm `ln` its mean and variance. `ln_folded` = (row sums of the weight, eps), with
    ln_stats: a layer norm folded into the weight and bias (`folded`), applied in the epilogue."""
    n, k = weight.shape
    x = x.reshape(-1, k)
    m = x.shape[0]
    if m > MAX_BATCH:
        raise ValueError(f"gemv takes at most {MAX_BATCH} rows, not {m}")
    if (weight.dtype == torch.int8) != (scale is not None):
        raise ValueError("an int8 weight needs its per-channel scale, and only an int8 weight takes one")
    block_m = row_tile(m)
    for stats, width in ((ln_stats, k), (stats_into, n)):
        if stats is not None and not (block_m > 1 and stats.is_contiguous() and stats.shape == row_stats_shape(m, width)):
            raise ValueError(f"row statistics of {m} rows × {width}: a contiguous {row_stats_shape(m, width)} "
                             f"(kernels.row_stats), for two or more rows, not {tuple(stats.shape)}")
    if ln_stats is not None and ln is None and ln_folded is None:
        raise ValueError("ln_stats are the statistics of a layer norm: give its weights (ln=…) too")
    if ln_folded is not None and (ln_stats is None or ln is not None or scale is not None):
        raise ValueError("a folded layer norm (ln_folded=…) takes its statistics from ln_stats, and neither ln=… nor "
                         "an int8 weight")
    if ln is not None and ln_stats is None and block_m >= LN_APART_ROWS:  # one kernel beats every program's pass
        x, ln = F.layer_norm(x, (k,), ln[0], ln[1], ln[2]), None
    y = torch.empty(m if argmax_into is None else 0, n, dtype=out_dtype or x.dtype, device=x.device)
    cache, positions = kv if kv is not None else (y, y)
    if kv is not None and not (cache.is_contiguous() and cache.shape[0] == m and 3 * cache.shape[2] * cache.shape[4] == n):
        raise ValueError(f"kv: a contiguous cache [{m}, 2, heads, capacity, head_dim] of this QKV's {n} rows, "
                         f"not {tuple(cache.shape)}")
    ln_w, ln_b, eps = ln if ln is not None else (weight, weight, ln_folded[1] if ln_folded is not None else 0.0)
    chosen = _CHOSEN.get(shape_of(m, weight, x))
    if INTERPRETED:  # Triton's CPU interpreter (TRITON_INTERPRET=1, for tests) cannot time: one fixed block there
        kernel, blocks = _gemv_kernel, {"BLOCK_N": DOT_MIN, "BLOCK_K": 256}
    elif chosen is not None:  # what `tune` chose (or an engine recorded)
        kernel, blocks = _gemv_kernel, {**chosen.kwargs, "num_warps": chosen.num_warps, "num_stages": chosen.num_stages}
    else:  # a shape `tune` never saw: Triton's autotuner, at its first launch
        kernel, blocks = _tuned_gemv_kernel, {}
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
    launch = functools.partial(kernel.warmup, grid=grid) if _COMPILE_ONLY.get() else kernel[grid]
    launch(
        x, weight, bias if bias is not None else weight, residual if residual is not None else y, y, ln_w, ln_b,
        scale if scale is not None else weight, cache, positions, argmax_into if argmax_into is not None else y,
        ln_stats if ln_stats is not None else y, stats_into if stats_into is not None else y,
        ln_folded[0] if ln_folded is not None else y, cache.shape[3] if kv is not None else 0, m, n, eps, K=k,
        LN=ln is not None, FOLDED=ln_folded is not None, HAS_BIAS=bias is not None,
        HAS_RES=residual is not None, GELU=gelu, SCALED=scale is not None, KV=kv is not None,
        HEAD_DIM=cache.shape[4] if kv is not None else 1, ARGMAX=argmax_into is not None,
        STATS_IN=ln_stats is not None, STATS_OUT=stats_into is not None,
        PARTS=ln_stats.shape[0] if ln_stats is not None else 1, **_pdl(), BLOCK_M=block_m,
        K_PAD=triton.next_power_of_2(k), **blocks)
    return y


_COMPILE_ONLY = contextvars.ContextVar("kernels_compile_only", default=False)


@contextlib.contextmanager
def compiling_in_parallel():
    """Inside, gemv only compiles the kernel it would launch (y is left unwritten), on a pool of threads (Triton's
    AsyncCompileMode); on leaving, every kernel is compiled and in Triton's caches. `tune` compiles all its candidates
    this way before timing them: compiled one by one as each was first timed, they were most of a build from an
    empty Triton cache (the demo's engine rule on two H200 boxes: 23 and 30 s one by one, 17 and 19 s in parallel).
    Where this Triton has no AsyncCompileMode (before 3.4), nothing is compiled ahead."""
    try:
        from triton.runtime._async_compile import AsyncCompileMode
    except ImportError:
        yield
        return
    with ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool, AsyncCompileMode(pool):  # the job's cores
        token = _COMPILE_ONLY.set(True)
        try:
            yield
        finally:
            _COMPILE_ONLY.reset(token)


# How the step's layer norms before a matmul are done (norm_way), the ways that pass row statistics (row_stats)
ROW_STATS_WAYS = ("statistics", "folded")


def norm_way(model, batch: int) -> str:
    """How the decode step at `batch` rows does the layer norm before each layer's QKV and fc: "pass" (one row:
    every program computes the statistics from the whole row), "statistics" (2-16 rows: from row_stats,
    normalized in the loop), "folded" (from FOLD_ROWS with fp16/bf16 weights: from row_stats, folded into the
    weights, `folded`: the loop a plain matmul), "apart" (from LN_APART_ROWS with int8 weights: a layer-norm kernel
    of its own). At 64 rows on the H200 (benchmarks/kernel_bench.py): QKV 9.0 µs folded vs 12.1 apart and 20.3
    from statistics, fc 6.5 vs 9.8 and 16.3."""
    tile = row_tile(batch)
    if tile == 1:
        return "pass"
    if tile >= FOLD_ROWS and model.w["layers.0.qkv.weight"].dtype != torch.int8:
        return "folded"
    return "statistics" if tile < LN_APART_ROWS else "apart"


def folded(model, linear: str, norm: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The linear `linear` [N, K] with the layer norm `norm` before it folded in: (W∘γ in the weight's dtype, W·β + b
    and the rows' sums Σ_k (W∘γ) of that rounded weight, both fp32), as LN(x)·Wᵀ + b
    = rstd·(x·(W∘γ)ᵀ − mean·Σ_k (W∘γ)) + W·β + b. Made at first use, kept with the model's weights."""
    key = linear + ".ln_folded"
    if key not in model.w:
        weight = model.w[linear + ".weight"]
        if weight.dtype == torch.int8:
            raise ValueError(f"{linear}: a weight-only int8 weight cannot take its layer norm's γ (per input column, "
                             "its scale is per output channel): its layer norm stays apart")
        w, gamma, beta = weight.float(), model.w[norm + ".weight"].float(), model.w[norm + ".bias"].float()
        model.w[key] = (w * gamma).to(weight.dtype)
        model.w[key + "_bias"] = w @ beta + model.w[linear + ".bias"].float()
        model.w[key + "_sums"] = model.w[key].float().sum(1)
    return model.w[key], model.w[key + "_bias"], model.w[key + "_sums"]


def row_stats_shape(batch: int, width: int) -> tuple[int, int, int]:
    """[parts, 2, row tile]: a part per program of the narrowest blocks (BLOCK_N = DOT_MIN) over `width` outputs,
    padded to a power of two."""
    return triton.next_power_of_2(triton.cdiv(width, DOT_MIN)), 2, row_tile(batch)


def row_stats(batch: int, width: int, device: torch.device, count: int = 1) -> list[torch.Tensor]:
    """`count` zeroed buffers (one memset) for gemv(stats_into=…) of `batch` rows × `width` outputs, read by
    gemv(ln_stats=…). Every gemv that writes one buffer must have one shape (so one BLOCK_N): the parts none writes
    stay zero."""
    return list(torch.zeros((count, *row_stats_shape(batch, width)), dtype=torch.float32, device=device).unbind(0))


def context_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                   scale: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """A linear of the context phase (ParallelGPT2.context_linear): through gemv where its tokens fit one row tile
    and `tune` chose its blocks (a weight-only int8 weight widened in the kernel instead of dequantized whole,
    no cuBLAS call, so no cuBLAS workspace); else the weight dequantized and F.linear, as without the kernels."""
    rows = x.reshape(-1, x.shape[-1])
    if rows.shape[0] <= MAX_BATCH and shape_of(rows.shape[0], weight, rows) in _CHOSEN:
        return gemv(rows, weight, bias, scale=scale, out_dtype=out_dtype).view(*x.shape[:-1], weight.shape[0])
    out = (F.linear if scale is None else dequantizing(F.linear, scale))(x, weight, bias)
    return out if out_dtype is None else out.to(out_dtype)


def argmax_slots(batch: int, device: torch.device) -> torch.Tensor:
    """Empty argmax slots for gemv(argmax_into=…), one a row: the decoder state's "best" for greedy_step."""
    return torch.full((batch,), NO_ARGMAX, dtype=torch.long, device=device)


def argmax_of(packed: torch.Tensor) -> torch.Tensor:
    """The indices in what gemv(argmax_into=…) merged."""
    return LOW_WORD.value - (packed & LOW_WORD.value)


@triton.jit
def _attend_slots(t0, length, q, keys, values, running_max, total, acc, HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr):
    """Online softmax over BLOCK_T cache slots from t0: the running max, the sum of weights and the weighted values."""
    dims = tl.arange(0, HEAD_DIM)
    slots = t0 + tl.arange(0, BLOCK_T)
    filled = slots < length
    k = tl.load(keys + slots[:, None] * HEAD_DIM + dims[None, :], mask=filled[:, None], other=0.0)
    scores = tl.where(filled, tl.sum(k.to(tl.float32) * q[None, :], axis=1), float("-inf"))
    new_max = tl.maximum(running_max, tl.max(scores, axis=0))
    weights = tl.exp(scores - new_max)
    rescale = tl.exp(running_max - new_max)
    v = tl.load(values + slots[:, None] * HEAD_DIM + dims[None, :], mask=filled[:, None], other=0.0)
    acc = acc * rescale + tl.sum(weights[:, None] * v.to(tl.float32), axis=0)
    return new_max, total * rescale + tl.sum(weights, axis=0), acc


@triton.jit
def _attention_kernel(qkv_ptr, kv_ptr, pos_ptr, out_ptr, heads, scale, CAPACITY: tl.constexpr,
                      HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr, WHOLE_CACHE: tl.constexpr, PDL: tl.constexpr):
    """One (row, head): its query against the cache's first position+1 slots, online softmax in fp32 over
    BLOCK_T slots at a time. Slots beyond a row's position are never read; on the GPU the loop stops at the row's
    length. WHOLE_CACHE (Triton's CPU interpreter, which cannot take a loaded value as a loop bound): the loop runs
    over every block, the masks alone leaving out the slots beyond."""
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
    running_max = tl.full([], float("-inf"), tl.float32)
    total = tl.zeros([], dtype=tl.float32)
    acc = tl.zeros([HEAD_DIM], dtype=tl.float32)
    if WHOLE_CACHE:
        for t0 in range(0, CAPACITY, BLOCK_T):
            running_max, total, acc = _attend_slots(t0, length, q, keys, values, running_max, total, acc,
                                                    HEAD_DIM, BLOCK_T)
    else:
        for t0 in range(0, length, BLOCK_T):
            running_max, total, acc = _attend_slots(t0, length, q, keys, values, running_max, total, acc,
                                                    HEAD_DIM, BLOCK_T)
    tl.store(out_ptr + row * hidden + head * HEAD_DIM + dims, (acc / total).to(out_ptr.dtype.element_ty))


def attention_block(batch: int) -> tuple[int, int]:
    """(BLOCK_T, num_warps) of the attention kernel: the best of benchmarks/kernel_bench.py's sweep on the H200
    for a decode's lengths (up to a few hundred slots), by batch."""
    return (256, 4) if batch < 32 else (128, 4)


def attention(qkv: torch.Tensor, cache: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Decode attention of rows qkv [B, 3·heads·head_dim] (the QKV kernel's output, its K and V already in the
    cache) over one layer's contiguous cache [B, 2, heads, capacity, head_dim], each row up to its position.
    Returns [B, heads·head_dim], as softmax(q·kᵀ/√d)·v over those slots."""
    batch, _, heads, capacity, head_dim = cache.shape
    out = torch.empty(batch, heads * head_dim, dtype=qkv.dtype, device=qkv.device)
    block_t, warps = attention_block(batch)
    _attention_kernel[(batch, heads)](qkv, cache, positions, out, heads, head_dim**-0.5, CAPACITY=capacity,
                                      HEAD_DIM=head_dim, BLOCK_T=16 if INTERPRETED else block_t, num_warps=warps,
                                      WHOLE_CACHE=INTERPRETED, **_pdl())
    return out


@triton.jit
def _greedy_step_kernel(best_ptr, tokens_ptr, positions_ptr, step_ptr, finished_ptr, end_ptr, stop_ptr, out_ptr,
                        out_width, M, EMPTY: tl.constexpr, PDL: tl.constexpr, BLOCK_M: tl.constexpr):
    """The decoder's bookkeeping after a greedy step, in one program: each row's token (the end id once the row
    has finished, where the run stops at it), finished rows, the token into out[row, step], the next step's
    tokens and positions, and the argmax slots emptied for the next step."""
    if PDL:
        tl.extra.cuda.gdc_wait()
    rows = tl.arange(0, BLOCK_M)
    ok = rows < M
    packed = tl.load(best_ptr + rows, mask=ok, other=0)
    token = LOW_WORD - (packed & LOW_WORD)
    end = tl.load(end_ptr)
    stop = tl.load(stop_ptr) != 0
    finished = tl.load(finished_ptr + rows, mask=ok, other=0) != 0
    token = tl.where(finished & stop, end, token)
    finished = finished | (token == end)
    step = tl.load(step_ptr)
    tl.store(out_ptr + rows * out_width + step, token, mask=ok)
    tl.store(tokens_ptr + rows, token, mask=ok)
    tl.store(positions_ptr + rows, tl.load(positions_ptr + rows, mask=ok, other=0) + 1, mask=ok)
    tl.store(finished_ptr + rows, finished.to(tl.int1), mask=ok)
    tl.store(best_ptr + rows, tl.full([BLOCK_M], EMPTY, tl.int64), mask=ok)
    tl.store(step_ptr, step + 1)


def _linear(model, p: str, name: str, x: torch.Tensor, **fused) -> torch.Tensor:
    """Layer `p`'s linear `name` over x, with what the step fuses into it."""
    w = model.w
    return gemv(x, w[p + name + ".weight"], w[p + name + ".bias"], scale=w.get(f"{p}{name}.{SCALE}"), **fused)


def _norm(model, name: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    return model.w[name + ".weight"], model.w[name + ".bias"], model.dims.eps


def _normed_linear(model, p: str, name: str, norm: str, x: torch.Tensor, stats: torch.Tensor | None, fold: bool,
                   **fused) -> torch.Tensor:
    """Layer `p`'s linear `name` after its layer norm `norm`: with `fold` and x's row statistics, the layer norm
    folded into the weights (`folded`); else in the kernel (from the statistics, or a pass) or apart (gemv's choice
    by rows)."""
    if fold and stats is not None:
        weight, bias, sums = folded(model, p + name, p + norm)
        return gemv(x, weight, bias, ln_folded=(sums, model.dims.eps), ln_stats=stats, **fused)
    return _linear(model, p, name, x, ln=_norm(model, p + norm), ln_stats=stats, **fused)


def _layers(model, tokens: torch.Tensor, positions: torch.Tensor, cache) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The transformer layers of a decode step: h [B, H] before ln_f, and (2-16 rows) its rows' statistics for
    ln_f. Each linear one kernel with its layer norm, bias, GELU or residual fused in, the QKV kernel writing K and V
    into the cache, attention one kernel. From 2 rows the two kernels that add into the residual stream (dense,
    proj) leave its rows' partial sums for the layer norm after them (each its own buffer: ln_2, then the next
    ln_1 or ln_f), so that only the first layer norm is a pass over the rows of its own (`norm_way`)."""
    h = model._embed(tokens, positions)  # [B, H]
    batch = h.shape[0]
    way = norm_way(model, batch)
    fold = way == "folded"
    after_attention, after_mlp = row_stats(batch, h.shape[1], h.device, 2) if way in ROW_STATS_WAYS else (None, None)
    for layer in range(model.dims.layers):
        p = f"layers.{layer}."
        qkv = _normed_linear(model, p, "qkv", "ln_1", h, after_mlp if layer else None, fold,
                             kv=(cache.kv[layer], positions))
        h = _linear(model, p, "dense", attention(qkv, cache.kv[layer], positions), residual=h,
                    stats_into=after_attention)
        x = _normed_linear(model, p, "fc", "ln_2", h, after_attention, fold, gelu=True)
        h = _linear(model, p, "proj", x, residual=h, stats_into=after_mlp)
    return h, after_mlp if way == "statistics" else None  # the tied lm_head is never folded: ln_f apart


def _final_norm(model) -> tuple[torch.Tensor, torch.Tensor, float]:
    return _norm(model, "ln_f")


def decode(model, tokens: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
    """model.decode for a batch of up to MAX_BATCH rows (tp 1), attending over each row's filled slots. Returns
    logits [B, V] in fp32."""
    h, stats = _layers(model, tokens, positions, cache)
    return gemv(h, model.lm_head, ln=_final_norm(model), ln_stats=stats, out_dtype=torch.float32)


def greedy_step(model, state: dict[str, torch.Tensor], cache) -> None:
    """One greedy decode step over the decoder's state (graphs.StaticDecoder._state): the layers, the lm_head with
    the argmax in its epilogue (the logits never stored) and the bookkeeping kernel."""
    h, stats = _layers(model, state["tokens"], state["positions"], cache)
    gemv(h, model.lm_head, ln=_final_norm(model), ln_stats=stats, argmax_into=state["best"])
    finish_step(state)


def finish_step(state: dict[str, torch.Tensor]) -> None:
    """The bookkeeping kernel over the decoder's state, its argmax slots filled by the lm_head."""
    batch = state["tokens"].shape[0]
    _greedy_step_kernel[(1,)](state["best"], state["tokens"], state["positions"], state["step"], state["finished"],
                              state["end_id"], state["stop_at_end"], state["out"], state["out"].shape[1], batch,
                              EMPTY=NO_ARGMAX, BLOCK_M=triton.next_power_of_2(batch), **_pdl())


def applies(model, batch: int) -> bool:
    """Whether these kernels can run the model's decode step at `batch`: one rank, at most MAX_BATCH rows, fp16/bf16
    or weight-only int8 linears, GPT-2's tanh GELU."""
    return (model.world_size == 1 and batch <= MAX_BATCH and model.dims.activation in TANH_GELUS
            and model.lm_head.dtype in (torch.float16, torch.bfloat16))


def time_in_graph(launches, repeats: int = 20) -> float:
    """Microseconds per launch of `launches` (callables, say one per layer), captured once as one CUDA graph and
    replayed: as a decode step meets each kernel (after the previous kernel, on weights not in L2, with PDL)."""
    for launch in launches:  # compile, warm
        launch()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for launch in launches:
            launch()
    for _ in range(3):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / repeats / len(launches)


# (row tile, N, K, weight dtype, activation dtype) → the configuration `tune` chose, or an engine recorded
_CHOSEN: dict[tuple, triton.Config] = {}


def step_linears(model, batch: int, way: str | None = None) -> dict[str, tuple]:
    """Each linear of the decode step at `batch` rows, as `tune` times it: (the weight, the input, launches over
    all layers' own weights, the lm_head's four times), fused as the step fuses it, over random activations.
    `way`: the layer norms' (norm_way's names) instead of the step's, to compare."""
    w, device, dtype = model.w, model.lm_head.device, model.lm_head.dtype
    way = way or norm_way(model, batch)
    h = torch.randn(batch, model.dims.hidden, device=device, dtype=dtype)
    inner = torch.randn(batch, w["layers.0.fc.weight"].shape[0], device=device, dtype=dtype)
    scratch = torch.zeros(batch, 2, model.local_heads, 1, model.head_dim, device=device, dtype=dtype)  # slot 0
    positions = torch.zeros(batch, dtype=torch.long, device=device)
    best = argmax_slots(batch, device)
    layers = [f"layers.{i}." for i in range(model.dims.layers)]
    read = into = None
    if way in ROW_STATS_WAYS and batch > 1:  # as _layers passes them, of rows of unit variance
        read, into = row_stats(batch, model.dims.hidden, device, 2)
        read[:, 1] = model.dims.hidden / read.shape[0]
    fold = way == "folded"
    return {
        "qkv": (w["layers.0.qkv.weight"], h, [
            lambda p=p: _normed_linear(model, p, "qkv", "ln_1", h, read, fold, kv=(scratch, positions))
            for p in layers]),
        "dense": (w["layers.0.dense.weight"], h, [lambda p=p: _linear(model, p, "dense", h, residual=h, stats_into=into)
                                                 for p in layers]),
        "fc": (w["layers.0.fc.weight"], h, [lambda p=p: _normed_linear(model, p, "fc", "ln_2", h, read, fold, gelu=True)
                                           for p in layers]),
        "proj": (w["layers.0.proj.weight"], inner, [
            lambda p=p: _linear(model, p, "proj", inner, residual=h, stats_into=into) for p in layers]),
        "lm_head": (model.lm_head, h, [lambda: gemv(h, model.lm_head, ln=_final_norm(model),
                                                    ln_stats=read if way == "statistics" else None,
                                                    argmax_into=best)] * 4),
    }


def shape_of(batch: int, weight: torch.Tensor, x: torch.Tensor) -> tuple:
    """The key of a linear's choice for `batch` rows: (row tile, N, K, weight dtype, activation dtype)."""
    return (row_tile(batch), *weight.shape, str(weight.dtype), str(x.dtype))


@torch.inference_mode()
def tune(model, batch: int) -> dict[str, tuple[float, triton.Config]]:
    """Choose the block sizes of the step's linears at `batch` by timing every fitting candidate as the step runs it
    (step_linears, time_in_graph): each linear over all layers' own weights in one CUDA graph. Triton's autotuner
    times one launch at a time and misranked these microsecond kernels (benchmarks/kernel_bench.py on the H200:
    proj int8 at batch 1 tuned 6.45 µs, the sweep's best 3.95). Returns each linear's (µs per launch, choice)."""
    plans = {name: (shape_of(batch, weight, x), launches,
                    _fitting(BLOCKS, {}, BLOCK_M=row_tile(batch), K_PAD=triton.next_power_of_2(weight.shape[1])))
             for name, (weight, x, launches) in step_linears(model, batch).items()}
    with compiling_in_parallel():
        for key, launches, candidates in plans.values():
            for config in candidates:
                _CHOSEN[key] = config
                launches[0]()  # every layer's launch is the same kernel
    chosen = {}
    for name, (key, launches, candidates) in plans.items():
        timed = []
        for config in candidates:
            _CHOSEN[key] = config
            try:
                timed.append((time_in_graph(launches, repeats=10), config))
            except triton.runtime.errors.OutOfResources:  # more shared memory than this GPU has
                continue
        chosen[name] = min(timed, key=lambda entry: entry[0])
        _CHOSEN[key] = chosen[name][1]
    return chosen


def tuning() -> list[dict]:
    """The block sizes chosen in this process, as JSON: `tune`'s per (row tile, shape, dtypes) and the autotuner's
    for shapes it never saw (per its own key)."""
    def entry(field, key, config):
        return {field: list(key), "kwargs": config.kwargs, "num_warps": config.num_warps,
                "num_stages": config.num_stages}

    return ([entry("shape", key, config) for key, config in sorted(_CHOSEN.items(), key=str)]
            + [entry("key", key, config) for key, config in sorted(_tuned_gemv_kernel.cache.items(), key=str)])


def clear_tuning() -> None:
    _CHOSEN.clear()
    _tuned_gemv_kernel.cache.clear()


def use_tuning(recorded: list[dict]) -> None:
    """Hand back the choices recorded at build, so that no configuration is timed again."""
    for entry in recorded:
        config = triton.Config(entry["kwargs"], num_warps=entry["num_warps"], num_stages=entry["num_stages"])
        if "shape" in entry:
            _CHOSEN[tuple(entry["shape"])] = config
        else:  # the autotuner's (every record before `tune`)
            _tuned_gemv_kernel.cache[tuple(entry["key"])] = config
