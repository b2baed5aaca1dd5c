"""Hand-written Triton kernels for the batch-1 decode step (`torch_compile: triton`): each linear of a layer is one
kernel with its neighbours fused in, so a layer is four matrix-vector kernels plus the cache write and attention.

    ln_1 → QKV (+bias)            gemv(ln=…)        layer norm recomputed by every program from the 1×H row
    attention dense (+bias, +h)   gemv(residual=…)  the residual added in the epilogue
    ln_2 → fc (+bias, GELU)       gemv(ln=…, gelu=True)
    MLP proj (+bias, +h)          gemv(residual=…)
    ln_f → lm_head                gemv(ln=…)

Each program reads BLOCK_N full weight rows in BLOCK_K-wide strips and keeps the running sums in fp32; the
activation row (a few KB) is read by every program. Batch 1, tp 1, a contiguous [out, in] fp16/bf16 weight.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .model import TANH_GELUS, decode_mask


@triton.jit
def _gelu_tanh(x):
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))


# Tuned once per weight shape at first use (outside CUDA graph capture: the decoder's warm-up steps).
BLOCKS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)
          for n, k, w in ((4, 512, 4), (8, 256, 4), (8, 512, 4), (16, 256, 4), (16, 512, 8), (32, 256, 8),
                          (2, 1024, 4), (4, 1024, 8))]


@triton.jit
def _gemv_kernel(x_ptr, w_ptr, b_ptr, res_ptr, y_ptr, ln_w_ptr, ln_b_ptr, N, eps, K: tl.constexpr,
                 LN: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, GELU: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, K_PAD: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    if LN:  # the row's statistics, recomputed by every program: K elements, cheaper than a kernel of its own
        all_cols = tl.arange(0, K_PAD)
        whole = tl.load(x_ptr + all_cols, mask=all_cols < K, other=0.0).to(tl.float32)
        mean = tl.sum(whole, axis=0) / K
        centred = tl.where(all_cols < K, whole - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=0) / K + eps)
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        col_ok = cols < K
        x = tl.load(x_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        if LN:
            x = (x - mean) * rstd * tl.load(ln_w_ptr + cols, mask=col_ok, other=0.0).to(tl.float32) \
                + tl.load(ln_b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
            x = tl.where(col_ok, x, 0.0)
        w = tl.load(w_ptr + rows[:, None] * K + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0)
        acc += tl.sum(w.to(tl.float32) * x[None, :], axis=1)
    if HAS_BIAS:
        acc += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    if GELU:
        acc = _gelu_tanh(acc)
    if HAS_RES:
        acc += tl.load(res_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(y_ptr + rows, acc.to(y_ptr.dtype.element_ty), mask=row_ok)


INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_tuned_gemv_kernel = triton.autotune(configs=BLOCKS, key=["N", "K"])(_gemv_kernel)


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, residual: torch.Tensor | None = None,
         gelu: bool = False, ln: tuple[torch.Tensor, torch.Tensor, float] | None = None,
         out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """y = act(LN(x) · Wᵀ + b) + residual for one row x [1, K] or [K]; weight [N, K]. Returns [1, N]."""
    n, k = weight.shape
    y = torch.empty(1, n, dtype=out_dtype or x.dtype, device=x.device)
    ln_w, ln_b, eps = ln if ln is not None else (weight, weight, 0.0)
    # Triton's CPU interpreter (TRITON_INTERPRET=1, for tests) cannot time configurations: one fixed block there
    kernel, blocks = (_gemv_kernel, {"BLOCK_N": 8, "BLOCK_K": 256}) if INTERPRETED else (_tuned_gemv_kernel, {})
    kernel[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)](
        x, weight, bias if bias is not None else weight, residual if residual is not None else y, y, ln_w, ln_b,
        n, eps, K=k, LN=ln is not None, HAS_BIAS=bias is not None, HAS_RES=residual is not None, GELU=gelu,
        K_PAD=triton.next_power_of_2(k), **blocks)
    return y


def decode(model, tokens: torch.Tensor, positions: torch.Tensor, cache, span: int) -> torch.Tensor:
    """model.decode at batch 1 (tp 1, fp16/bf16 weights), each linear one kernel with its layer norm, bias, GELU
    or residual fused in; the cache write and attention as in model.decode. Returns logits [1, V] in fp32."""
    w, eps, d = model.w, model.dims.eps, model.dims
    h = model._embed(tokens, positions)  # [1, H]
    mask = decode_mask(positions, span, h.dtype)
    seq_ids = torch.zeros(1, dtype=torch.long, device=tokens.device)
    for layer in range(d.layers):
        p = f"layers.{layer}."
        qkv = gemv(h, w[p + "qkv.weight"], w[p + "qkv.bias"], ln=(w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps))
        qkv = qkv.view(1, 3, model.local_heads, model.head_dim)
        cache.write(layer, seq_ids, positions, qkv[:, 1:])
        keys, values = cache.read(layer, span)
        attn = model._attend(qkv[:, 0, :, None, :], keys, values, mask)  # [1, h, 1, d]
        h = gemv(attn.reshape(1, -1), w[p + "dense.weight"], w[p + "dense.bias"], residual=h)
        x = gemv(h, w[p + "fc.weight"], w[p + "fc.bias"], gelu=True, ln=(w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps))
        h = gemv(x, w[p + "proj.weight"], w[p + "proj.bias"], residual=h)
    return gemv(h, model.lm_head, ln=(w["ln_f.weight"], w["ln_f.bias"], eps), out_dtype=torch.float32)


def applies(model) -> bool:
    """Whether these kernels can run the model's batch-1 step: one rank, plain fp16/bf16 weights, GPT-2's tanh GELU."""
    return (model.world_size == 1 and model.dims.activation in TANH_GELUS
            and not any(name.endswith("per_channel_scale") for name in model.w)
            and model.w["layers.0.qkv.weight"].dtype in (torch.float16, torch.bfloat16))
