"""Hand-written Triton kernels for the small-batch decode step (`torch_compile: triton`): each linear of a layer is
one kernel with its neighbours fused in, so a layer is four matrix-vector kernels plus attention.

    ln_1 → QKV (+bias) → K, V into the cache   gemv(ln=…, kv=…)   layer norm recomputed by every program
    attention dense (+bias, +h)                gemv(residual=…)   the residual added in the epilogue
    ln_2 → fc (+bias, GELU)                    gemv(ln=…, gelu=True)
    MLP proj (+bias, +h)                       gemv(residual=…)
    ln_f → lm_head                             gemv(ln=…)

Each program reads BLOCK_N full weight rows in BLOCK_K-wide strips once and multiplies them with every one of the
batch's rows (up to MAX_BATCH: one row as a reduction, more through tl.dot on tensor cores), keeping the running sums
in fp32; the activation rows (a few KB) are read by every program. A weight-only int8 weight is widened in the
kernel and the sums scaled per output channel, as weight_only.dequantizing does: x·(q·s)ᵀ = (x·qᵀ)·s. tp 1, a
contiguous [out, in] weight.

Block sizes are autotuned per (batch, shape) at first use. The engine rule runs the kernels at build and records
the tuner's choices in the engine (`tuning`); a job that opens the engine hands them back (`use_tuning`) and so
starts without timing a single configuration.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .model import TANH_GELUS, decode_mask
from .weight_only import SCALE

MAX_BATCH = 8  # beyond this a GEMM (cuBLAS, or inductor's) reads the weight once per tile just as well


@triton.jit
def _gelu_tanh(x):
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))


# Tuned once per weight shape and batch at first use (outside CUDA graph capture: the decoder's warm-up steps).
BLOCKS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)
          for n, k, w in ((4, 512, 4), (8, 256, 4), (8, 512, 4), (16, 256, 4), (16, 512, 8), (32, 256, 8),
                          (2, 1024, 4), (4, 1024, 8), (8, 128, 4), (16, 128, 4), (32, 128, 4), (64, 128, 8))]
DOT_MIN = 16  # tl.dot's smallest tile side: a batch of 2-8 rows is padded to 16 (masked loads, tensor cores)
DOT_TILE_LIMIT = 8192  # weight elements per strip on the tl.dot path (more spill registers)


def _fitting(configs, named_args, **kwargs):
    """The configurations worth timing: strips no wider than the input rounded up to 128 (wider ones only load
    masked zeros: for a small model, a few configurations instead of all, at build); on the tl.dot path (batch > 1)
    at least DOT_MIN rows and at most DOT_TILE_LIMIT weight elements a strip."""
    widest = max(128, kwargs["K_PAD"])
    dot = kwargs["BLOCK_M"] > 1
    return [c for c in configs if c.kwargs["BLOCK_K"] <= widest and (not dot or (
        c.kwargs["BLOCK_N"] >= DOT_MIN and c.kwargs["BLOCK_N"] * c.kwargs["BLOCK_K"] <= DOT_TILE_LIMIT))]


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, b_ptr, res_ptr, y_ptr, ln_w_ptr, ln_b_ptr, scale_ptr, kv_ptr, pos_ptr, capacity, M, N,
                 eps, K: tl.constexpr, LN: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
                 GELU: tl.constexpr, SCALED: tl.constexpr, KV: tl.constexpr, HEAD_DIM: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, K_PAD: tl.constexpr):
    """BLOCK_M 1: a row reduction in fp32. BLOCK_M ≥ DOT_MIN: tl.dot of the rows (layer-normed in fp32, then in
    the activations' dtype, as a layer norm module would return them) with the weight strip in that dtype."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # output features
    row_ok = rows < N
    batch = tl.arange(0, BLOCK_M)
    batch_ok = batch < M
    if LN:  # each row's statistics, recomputed by every program (M×K elements: cheaper than a kernel of its own)
        if BLOCK_M == 1:
            all_cols = tl.arange(0, K_PAD)
            whole = tl.load(x_ptr + all_cols[None, :], mask=(all_cols < K)[None, :], other=0.0).to(tl.float32)
            mean = tl.sum(whole, axis=1) / K
            centred = tl.where((all_cols < K)[None, :], whole - mean[:, None], 0.0)
            rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / K + eps)
        else:  # in strips, so that BLOCK_M whole rows need not sit in registers
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
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        col_ok = cols < K
        x = tl.load(x_ptr + batch[:, None] * K + cols[None, :], mask=batch_ok[:, None] & col_ok[None, :],
                    other=0.0).to(tl.float32)
        if LN:
            x = (x - mean[:, None]) * rstd[:, None] \
                * tl.load(ln_w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :] \
                + tl.load(ln_b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
            x = tl.where(batch_ok[:, None] & col_ok[None, :], x, 0.0)
        w = tl.load(w_ptr + rows[:, None] * K + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        if BLOCK_M == 1:
            acc += tl.sum(w.to(tl.float32) * x, axis=1)[None, :]
        else:
            dtype = x_ptr.dtype.element_ty
            acc += tl.dot(x.to(dtype), tl.trans(w.to(dtype)))
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
    tl.store(y_ptr + out, acc.to(y_ptr.dtype.element_ty), mask=out_ok)
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
_tuned_gemv_kernel = triton.autotune(configs=BLOCKS, key=["M", "N", "K"],
                                     prune_configs_by={"early_config_prune": _fitting})(_gemv_kernel)


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, residual: torch.Tensor | None = None,
         gelu: bool = False, ln: tuple[torch.Tensor, torch.Tensor, float] | None = None,
         out_dtype: torch.dtype | None = None, scale: torch.Tensor | None = None,
         kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """y = act(LN(x) · Wᵀ (· scale) + b) + residual for rows x [M, K] (M ≤ MAX_BATCH); weight [N, K] in the
    compute dtype, or int8 with its per-channel `scale` [N]. Returns [M, N]. With `kv` = (one layer's contiguous
    cache [M, 2, heads, capacity, head_dim], positions [M]), y is a QKV projection whose K and V parts are also
    written into the cache at each row's position (the cache write fused into the matmul's epilogue)."""
    n, k = weight.shape
    x = x.reshape(-1, k)
    m = x.shape[0]
    if m > MAX_BATCH:
        raise ValueError(f"gemv takes at most {MAX_BATCH} rows, not {m}")
    if (weight.dtype == torch.int8) != (scale is not None):
        raise ValueError("an int8 weight needs its per-channel scale, and only an int8 weight takes one")
    y = torch.empty(m, n, dtype=out_dtype or x.dtype, device=x.device)
    cache, positions = kv if kv is not None else (y, y)
    if kv is not None and not (cache.is_contiguous() and cache.shape[0] == m and 3 * cache.shape[2] * cache.shape[4] == n):
        raise ValueError(f"kv: a contiguous cache [{m}, 2, heads, capacity, head_dim] of this QKV's {n} rows, "
                         f"not {tuple(cache.shape)}")
    ln_w, ln_b, eps = ln if ln is not None else (weight, weight, 0.0)
    # Triton's CPU interpreter (TRITON_INTERPRET=1, for tests) cannot time configurations: one fixed block there
    block_m = 1 if m == 1 else max(DOT_MIN, triton.next_power_of_2(m))
    kernel, blocks = (_gemv_kernel, {"BLOCK_N": DOT_MIN, "BLOCK_K": 256}) if INTERPRETED else (_tuned_gemv_kernel, {})
    kernel[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)](
        x, weight, bias if bias is not None else weight, residual if residual is not None else y, y, ln_w, ln_b,
        scale if scale is not None else weight, cache, positions, cache.shape[3] if kv is not None else 0, m, n, eps,
        K=k, LN=ln is not None, HAS_BIAS=bias is not None, HAS_RES=residual is not None, GELU=gelu,
        SCALED=scale is not None, KV=kv is not None, HEAD_DIM=cache.shape[4] if kv is not None else 1,
        BLOCK_M=block_m, K_PAD=triton.next_power_of_2(k), **blocks)
    return y


def decode(model, tokens: torch.Tensor, positions: torch.Tensor, cache, span: int) -> torch.Tensor:
    """model.decode for a batch of up to MAX_BATCH rows (tp 1), each linear one kernel with its layer norm, bias,
    GELU or residual fused in, and the QKV kernel writing K and V into the cache; attention as in model.decode.
    Returns logits [B, V] in fp32."""
    w, eps, d = model.w, model.dims.eps, model.dims
    batch = tokens.shape[0]
    h = model._embed(tokens, positions)  # [B, H]
    mask = decode_mask(positions, span, h.dtype)

    def linear(x, p, name, **fused):
        return gemv(x, w[p + name + ".weight"], w[p + name + ".bias"], scale=w.get(f"{p}{name}.{SCALE}"), **fused)

    for layer in range(d.layers):
        p = f"layers.{layer}."
        qkv = linear(h, p, "qkv", ln=(w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps), kv=(cache.kv[layer], positions))
        qkv = qkv.view(batch, 3, model.local_heads, model.head_dim)
        keys, values = cache.read(layer, span)
        attn = model._attend(qkv[:, 0, :, None, :], keys, values, mask)  # [B, h, 1, d]
        h = linear(attn.reshape(batch, -1), p, "dense", residual=h)
        x = linear(h, p, "fc", gelu=True, ln=(w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps))
        h = linear(x, p, "proj", residual=h)
    return gemv(h, model.lm_head, ln=(w["ln_f.weight"], w["ln_f.bias"], eps), out_dtype=torch.float32)


def applies(model, batch: int) -> bool:
    """Whether these kernels can run the model's decode step at `batch`: one rank, at most MAX_BATCH rows, fp16/bf16
    or weight-only int8 linears, GPT-2's tanh GELU."""
    return (model.world_size == 1 and batch <= MAX_BATCH and model.dims.activation in TANH_GELUS
            and model.lm_head.dtype in (torch.float16, torch.bfloat16))


def tuning() -> list[dict]:
    """The block sizes the tuner chose in this process, one entry per (batch, shape, dtypes) key, as JSON."""
    return [{"key": list(key), "kwargs": config.kwargs, "num_warps": config.num_warps,
             "num_stages": config.num_stages} for key, config in sorted(_tuned_gemv_kernel.cache.items(), key=str)]


def clear_tuning() -> None:
    _tuned_gemv_kernel.cache.clear()


def use_tuning(recorded: list[dict]) -> None:
    """Hand the tuner choices recorded at build, so that no configuration is timed again."""
    for entry in recorded:
        _tuned_gemv_kernel.cache[tuple(entry["key"])] = triton.Config(
            entry["kwargs"], num_warps=entry["num_warps"], num_stages=entry["num_stages"])
