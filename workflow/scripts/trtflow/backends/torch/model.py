"""GPT-2 over rank-local weights: the model reads top to bottom and works on this rank's heads.

Each rank holds its slice of QKV and the MLP fc (split by output columns) and of the attention dense and
MLP proj (split by input rows); the row-split projections go through `trtflow.tp.row_parallel`, which
sums the ranks' partial products and then adds the replicated bias once. Embeddings, layer norms and the
lm_head are replicated, so every rank computes the same logits.

The weights are typed (weights.GPT2Weights): `layer.qkv` is a Linear, `layer.ln_1` a LayerNorm.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F

from ...gpt2 import ModelDims
from ...infra.dist import all_reduce
from ...tp import row_parallel
from .kvcache import KVCache
from .weight_only import dequantizing
from .weights import GPT2Weights, Layer, Linear

TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # HF's names of GELU's tanh approximation


def decode_mask(positions: torch.Tensor, span: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask [B, 1, 1, span] of one decode step: 0 up to each row's position, -inf beyond it."""
    beyond = torch.arange(span, device=positions.device)[None] > positions[:, None]
    return torch.zeros(positions.shape[0], 1, 1, span, dtype=dtype, device=positions.device).masked_fill(
        beyond[:, None, None, :], float("-inf"))


def activation_fn(name: str):
    if name in TANH_GELUS:
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise ValueError(f"activation {name!r} is not supported by the torch runtime")


def multiply_and_sum(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A linear written as multiply-and-sum: under torch.compile this becomes one reduction kernel per matmul (bias
    and what follows fused in), which beats a GEMM call for a handful of rows (`decode: compile-gemv`)."""
    out = (x[..., None, :] * weight).sum(-1, dtype=torch.float32).to(x.dtype)
    return out if bias is None else out + bias


class ParallelGPT2(torch.nn.Module):
    """GPT-2 on this rank. `context_linear(x, weight, bias, scale=, out_dtype=)`, where given, runs the context's
    weight-only int8 linears and its lm_head (trtflow's kernels, kernels.ContextLinear)."""

    def __init__(self, dims: ModelDims, local_heads: int, world_size: int, weights: GPT2Weights,
                 fused_attention: bool = True, context_linear=None):
        super().__init__()
        self.dims, self.local_heads, self.world_size = dims, local_heads, world_size
        self.head_dim = dims.head_dim
        self.fused_attention = fused_attention
        self.act = activation_fn(dims.activation)
        self.weights = weights
        self.context_linear = context_linear

    # ------------------------------------------------------------------ pieces

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        """q [B,h,Tq,d]; k, v [B,h,Tk,d]; mask additive [B,1,Tq,Tk] (0 or -inf), or None for causal."""
        if self.fused_attention:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(self.head_dim)
        if mask is None:
            tq, tk = q.shape[-2], k.shape[-2]
            scores = scores.masked_fill(~torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq), float("-inf"))
        else:
            scores = scores + mask
        return (scores.softmax(-1).to(v.dtype)) @ v

    def _matmul_for(self, linear: Linear, matmul):
        """`matmul(x, weight, bias)` as it applies to `linear`: dequantizing where its weight is int8 (in the
        context, through context_linear where that is given)."""
        if not linear.quantized:
            return matmul
        if matmul is F.linear and self.context_linear is not None:
            return functools.partial(self.context_linear, scale=linear.scale)
        return dequantizing(matmul, linear.scale)

    def _apply(self, linear: Linear, x: torch.Tensor, matmul=F.linear) -> torch.Tensor:
        return self._matmul_for(linear, matmul)(x, linear.weight, linear.bias)

    def _attend_prompts(self, qkv: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Causal attention within each packed prompt: qkv [N, 3, h, d] → [N, h·d]. Prompts of one length (a
        benchmark's batch) go as one batched call, others one call each."""
        if len(set(lengths)) == 1:
            q, k, v = (t.reshape(len(lengths), lengths[0], self.local_heads, self.head_dim).transpose(1, 2)
                       for t in qkv.unbind(1))  # [B, h, T, d]
            return self._attend(q, k, v, None).transpose(1, 2).reshape(qkv.shape[0], -1)
        q, k, v = (t.transpose(0, 1) for t in qkv.unbind(1))  # [h, N, d]
        outs = [self._attend(qs[None], ks[None], vs[None], None)[0]
                for qs, ks, vs in zip(q.split(lengths, 1), k.split(lengths, 1), v.split(lengths, 1), strict=True)]
        return torch.cat(outs, dim=1).transpose(0, 1).reshape(qkv.shape[0], -1)

    def _qkv(self, layer: Layer, x: torch.Tensor, matmul=F.linear) -> torch.Tensor:
        """x [..., H] → [..., 3, h, d]: a view of one matmul's output, Q, K, V of this rank's heads."""
        return self._apply(layer.qkv, layer.ln_1(x), matmul).view(*x.shape[:-1], 3, self.local_heads, self.head_dim)

    def _row_parallel(self, linear: Linear, x: torch.Tensor, matmul=F.linear) -> torch.Tensor:
        return row_parallel(x, linear.weight, linear.bias, self._matmul_for(linear, matmul), all_reduce,
                            self.world_size)

    def _mlp(self, layer: Layer, h: torch.Tensor, matmul=F.linear) -> torch.Tensor:
        x = self.act(self._apply(layer.fc, layer.ln_2(h), matmul))
        return h + self._row_parallel(layer.proj, x, matmul)

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return F.embedding(tokens, self.weights.wte) + F.embedding(positions, self.weights.wpe)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        x = self.weights.ln_f(h)
        if self.context_linear is not None:
            return self.context_linear(x, self.weights.lm_head, out_dtype=torch.float32)
        return F.linear(x, self.weights.lm_head).float()

    # ------------------------------------------------------------------ phases

    def context(self, prompts: list[torch.Tensor], cache: KVCache, packed: bool,
                all_logits: bool = False) -> list[torch.Tensor] | torch.Tensor:
        """Run the prompts, fill the cache. Returns last-token logits [B, V] (or per-prompt all logits)."""
        if packed:
            return self._context_packed(prompts, cache, all_logits)
        return self._context_padded(prompts, cache, all_logits)

    def _context_packed(self, prompts, cache: KVCache, all_logits: bool):
        """remove_input_padding: all prompts as one token stream; attention per prompt; no pad computed.

        Uses no host→device copies, so a fixed set of prompt lengths can be captured as a CUDA graph."""
        lengths = [len(p) for p in prompts]
        device = prompts[0].device
        tokens = torch.cat(prompts)
        positions = torch.cat([torch.arange(n, device=device) for n in lengths])
        seq_ids = torch.cat([torch.full((n,), b, device=device) for b, n in enumerate(lengths)])
        h = self.embed(tokens, positions)  # [N, H]
        for index, layer in enumerate(self.weights.layers):
            qkv = self._qkv(layer, h)  # [N, 3, h, d]
            cache.write(index, seq_ids, positions, qkv[:, 1:])
            h = h + self._row_parallel(layer.dense, self._attend_prompts(qkv, lengths))
            h = self._mlp(layer, h)
        if all_logits:
            return list(self._logits(h).split(lengths))
        ends = list(itertools.accumulate(lengths))
        return self._logits(torch.stack([h[end - 1] for end in ends]))

    def _context_padded(self, prompts, cache: KVCache, all_logits: bool):
        """Padded batch [B, Tmax] (right padding masked out), as engines without padding removal run."""
        lengths = torch.tensor([len(p) for p in prompts], device=prompts[0].device)
        batch, width = len(prompts), int(lengths.max())
        tokens = torch.zeros(batch, width, dtype=torch.long, device=lengths.device)
        for b, prompt in enumerate(prompts):
            tokens[b, : len(prompt)] = prompt
        positions = torch.arange(width, device=lengths.device).expand(batch, width)
        valid = positions < lengths[:, None]  # [B, T]
        allowed = torch.ones(width, width, dtype=torch.bool, device=lengths.device).tril()[None, None]
        allowed = (allowed & valid[:, None, None, :]) | ~valid[:, None, :, None]  # pad queries: finite, ignored
        seq_ids, pos_ids = valid.nonzero(as_tuple=True)
        h = self.embed(tokens, positions)  # [B, T, H]
        mask = torch.zeros(allowed.shape, dtype=h.dtype, device=h.device).masked_fill(~allowed, float("-inf"))
        for index, layer in enumerate(self.weights.layers):
            qkv = self._qkv(layer, h)  # [B, T, 3, h, d]
            cache.write(index, seq_ids, pos_ids, qkv[valid][:, 1:])
            q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # [B, h, T, d]
            attn = self._attend(q, k, v, mask).transpose(1, 2).reshape(*h.shape[:2], -1)
            h = h + self._row_parallel(layer.dense, attn)
            h = self._mlp(layer, h)
        if all_logits:
            logits = self._logits(h)
            return [logits[b, : int(n)] for b, n in enumerate(lengths)]
        return self._logits(h[torch.arange(batch, device=h.device), lengths - 1])

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache, span: int,
               multiply_sum: bool = False) -> torch.Tensor:
        """One generation step: tokens [B] at positions [B]; attends over cache slots [0, span).

        multiply_sum: the layer matmuls as multiply_and_sum; only worth it compiled, at small batch."""
        matmul = multiply_and_sum if multiply_sum else F.linear
        batch = tokens.shape[0]
        seq_ids = torch.arange(batch, device=tokens.device)
        h = self.embed(tokens, positions)  # [B, H]
        mask = decode_mask(positions, span, h.dtype)
        for index, layer in enumerate(self.weights.layers):
            qkv = self._qkv(layer, h, matmul)  # [B, 3, h, d]
            cache.write(index, seq_ids, positions, qkv[:, 1:])
            keys, values = cache.read(index, span)
            attn = self._attend(qkv[:, 0, :, None, :], keys, values, mask)  # [B, h, 1, d]
            h = h + self._row_parallel(layer.dense, attn.reshape(batch, -1), matmul)
            h = self._mlp(layer, h, matmul)
        return self._logits(h)
