"""GPT-2's decode step as trtflow's kernels run it: one rank, up to MAX_BATCH rows, 5 kernels a layer (one row:
3, row.py).

    ln_1 → QKV (+bias) → K, V into the cache   linear.qkv_into_cache
    attention over each row's filled slots     attention.attention
    dense (+bias, + h)                         linear.linear, the residual in the epilogue
    ln_2 → fc (+bias, GELU)                    linear.linear
    proj (+bias, + h)                          linear.linear
    ln_f → lm_head → argmax                    linear.lm_head_argmax (the logits never written)
    the step's bookkeeping                     finish_step

How the layer norm before QKV and fc is done depends on the rows (NormWay): one row, every program makes a pass
over it; from 2 rows the kernels that write the residual stream (dense, proj) leave their rows' partial sums
(operands.row_stats) and the layer norm after takes its statistics from them; from FOLD_ROWS with fp16/bf16 weights
QKV's and fc's layer norms are folded into copies of their weights (fold.py); with int8 weights from
LN_APART_ROWS a layer norm is a kernel of its own. The first layer's ln_1 has no kernel before it to leave
statistics, and the tied lm_head is never folded (decisions.md has the measurements behind each threshold).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ....gpt2 import ModelDims
from ..model import TANH_GELUS, ParallelGPT2
from ..state import DecodeState
from ..weights import Linear
from . import row
from .attention import attention
from .fold import FoldedLinear, fold
from .launch import MAX_BATCH, pdl_options, row_tile
from .linear import LN_APART_ROWS, linear, lm_head_argmax, qkv_into_cache
from .operands import LOW_WORD, NO_ARGMAX, Epilogue, Norm, argmax_slots, row_stats
from .tuning import TuningTable

FOLD_ROWS = 32  # from this row tile on, fp16/bf16 QKV and fc take their layer norms folded in (decisions.md)


class NormWay(enum.Enum):
    PASS = "pass"  # one row: every program computes the statistics from the whole row
    STATISTICS = "statistics"  # 2-16 rows: from row_stats, normalized in the loop
    FOLDED = "folded"  # from FOLD_ROWS, fp16/bf16: from row_stats, folded into the weights
    APART = "apart"  # from LN_APART_ROWS, int8: a layer-norm kernel of its own

    @property
    def passes_statistics(self) -> bool:
        return self in (NormWay.STATISTICS, NormWay.FOLDED)


def norm_way(batch: int, quantized: bool) -> NormWay:
    tile = row_tile(batch)
    if tile == 1:
        return NormWay.PASS
    if tile >= FOLD_ROWS and not quantized:
        return NormWay.FOLDED
    return NormWay.STATISTICS if tile < LN_APART_ROWS else NormWay.APART


def _one_row(batch: int) -> bool:
    """Whether a step of `batch` rows runs row.py's three kernels a layer (its linears take no tuned blocks)."""
    return batch == 1 and row.ENABLED


def applies(dims: ModelDims, world_size: int, dtype: torch.dtype, batch: int) -> bool:
    """Whether the kernels can run a decode step of `batch` rows: one rank, at most MAX_BATCH rows, fp16/bf16 (or
    weight-only int8) linears, GPT-2's tanh GELU."""
    return (world_size == 1 and batch <= MAX_BATCH and dims.activation in TANH_GELUS
            and dtype in (torch.float16, torch.bfloat16))


@dataclass(frozen=True)
class FoldedLayer:
    qkv: FoldedLinear | None  # None in the first layer: no statistics before its ln_1
    fc: FoldedLinear


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


def finish_step(state: DecodeState) -> None:
    """The bookkeeping kernel over the decoder's state, its argmax slots filled by the lm_head."""
    batch = state.tokens.shape[0]
    _greedy_step_kernel[(1,)](state.best, state.tokens, state.positions, state.step, state.finished, state.end_id,
                              state.stop_at_end, state.out, state.out.shape[1], batch, EMPTY=NO_ARGMAX,
                              BLOCK_M=triton.next_power_of_2(batch), **pdl_options())


class KernelStep:
    """The decode step of `model` (tp 1) through the kernels, for batches up to `max_batch` rows over a static cache of
    `capacity` slots a row; block sizes from `tuning`. Folds the layer norms once here where a batch of max_batch
    rows would take them folded."""

    def __init__(self, model: ParallelGPT2, tuning: TuningTable, max_batch: int, capacity: int):
        self.model, self.weights, self.tuning, self.capacity = model, model.weights, tuning, capacity
        folds = norm_way(min(max_batch, MAX_BATCH), self.weights.quantized) is NormWay.FOLDED
        self.folded = tuple(FoldedLayer(fold(layer.ln_1, layer.qkv) if index else None, fold(layer.ln_2, layer.fc))
                            for index, layer in enumerate(self.weights.layers)) if folds else ()

    def nbytes(self) -> int:
        """The folded copies' bytes, on top of the model's weights."""
        return sum(f.nbytes() for layer in self.folded for f in (layer.qkv, layer.fc) if f is not None)

    def _normed(self, name: str, index: int, x: torch.Tensor, stats: torch.Tensor | None, way: NormWay, **kv):
        """Layer `index`'s QKV (with kv: cache, positions) or fc after its layer norm, as `way` does it."""
        layer = self.weights.layers[index]
        plain, norm = (layer.qkv, layer.ln_1) if name == "qkv" else (layer.fc, layer.ln_2)
        folded = getattr(self.folded[index], name) if way is NormWay.FOLDED and stats is not None else None
        lin, spec = (folded, Norm(statistics=stats)) if folded is not None else (plain, Norm(norm, stats))
        if name == "qkv":
            return qkv_into_cache(x, lin, spec, kv["cache"], kv["positions"], tuning=self.tuning)
        return linear(x, lin, spec, Epilogue(gelu=True), tuning=self.tuning)

    def _layers(self, tokens: torch.Tensor, positions: torch.Tensor, caches: list[torch.Tensor]):
        """h [B, H] before ln_f, and (2-16 rows) its rows' statistics for ln_f. The two kernels that add into the
        residual stream (dense, proj) leave its rows' partial sums for the layer norm after them, each in a buffer
        of its own (ln_2's; the next ln_1's or ln_f's)."""
        batch = tokens.shape[0]
        if _one_row(batch):
            return row.row_layers(self.weights, tokens, positions, caches, self.model.local_heads), None
        h = self.model.embed(tokens, positions)  # [B, H]
        way = norm_way(batch, self.weights.quantized)
        after_attention, after_mlp = (row_stats(batch, h.shape[1], h.device, 2) if way.passes_statistics
                                      else (None, None))
        for index, layer in enumerate(self.weights.layers):
            qkv = self._normed("qkv", index, h, after_mlp if index else None, way, cache=caches[index],
                               positions=positions)
            h = linear(attention(qkv, caches[index], positions), layer.dense,
                       epilogue=Epilogue(residual=h, row_sums_into=after_attention), tuning=self.tuning)
            x = self._normed("fc", index, h, after_attention, way)
            h = linear(x, layer.proj, epilogue=Epilogue(residual=h, row_sums_into=after_mlp), tuning=self.tuning)
        return h, after_mlp if way is NormWay.STATISTICS else None

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, caches: list[torch.Tensor]) -> torch.Tensor:
        """model.decode over each row's filled slots of one contiguous cache per layer. Returns logits [B, V], fp32."""
        h, stats = self._layers(tokens, positions, caches)
        return linear(h, Linear(self.weights.lm_head), Norm(self.weights.ln_f, stats),
                      Epilogue(out_dtype=torch.float32), tuning=self.tuning)

    def greedy(self, state: DecodeState, caches: list[torch.Tensor]) -> None:
        """One greedy step over the decoder's state: the layers, the lm_head with the argmax in its epilogue, the
        bookkeeping kernel."""
        h, stats = self._layers(state.tokens, state.positions, caches)
        lm_head_argmax(h, self.weights.lm_head, Norm(self.weights.ln_f, stats), state.best, tuning=self.tuning)
        finish_step(state)

    def linears(self, batch: int, way: NormWay | None = None) -> dict[str, tuple]:
        """Each linear of the step at `batch` rows (one row: the lm_head alone, row.py runs the layers) as
        tuning.tune times it: (the weight, the input, launches over all layers' own weights, the lm_head's four
        times), fused as the step fuses it, over random activations. `way`: the layer norms done another way than
        the step's, to compare."""
        weights, dims = self.weights, self.model.dims
        device, dtype = weights.lm_head.device, weights.lm_head.dtype
        way = way or norm_way(batch, weights.quantized)
        h = torch.randn(batch, dims.hidden, device=device, dtype=dtype)
        inner = torch.randn(batch, weights.layers[0].fc.weight.shape[0], device=device, dtype=dtype)
        cache = torch.zeros(batch, 2, self.model.local_heads, self.capacity, self.model.head_dim, device=device,
                            dtype=dtype)  # one layer's; the launches write slot 0
        positions = torch.zeros(batch, dtype=torch.long, device=device)
        best = argmax_slots(batch, device)
        read = into = None
        if way.passes_statistics and batch > 1:  # as _layers passes them, of rows of unit variance
            read, into = row_stats(batch, dims.hidden, device, 2)
            read[:, 1] = dims.hidden / read.shape[0]
        folded = way is NormWay.FOLDED and bool(self.folded)
        step = self if folded or way is not NormWay.FOLDED else KernelStep(self.model, self.tuning, MAX_BATCH,
                                                                            self.capacity)
        indices = range(len(weights.layers))
        # the first layer's QKV is never folded (no statistics before it): time the folded ones alone
        folded_qkv = range(1, len(indices)) if folded and len(indices) > 1 else indices
        first = weights.layers[0]
        stats = read if way is NormWay.STATISTICS else None
        lm_head = (weights.lm_head, h, [
            lambda: lm_head_argmax(h, weights.lm_head, Norm(weights.ln_f, stats), best, tuning=self.tuning)] * 4)
        if _one_row(batch):
            return {"lm_head": lm_head}
        return {
            "qkv": (first.qkv.weight, h, [lambda i=i: step._normed("qkv", i, h, read, way, cache=cache,
                                                                   positions=positions) for i in folded_qkv]),
            "dense": (first.dense.weight, h, [
                lambda i=i: linear(h, weights.layers[i].dense, epilogue=Epilogue(residual=h, row_sums_into=into),
                                   tuning=self.tuning) for i in indices]),
            "fc": (first.fc.weight, h, [lambda i=i: step._normed("fc", i, h, read, way) for i in indices]),
            "proj": (first.proj.weight, inner, [
                lambda i=i: linear(inner, weights.layers[i].proj, epilogue=Epilogue(residual=h, row_sums_into=into),
                                   tuning=self.tuning) for i in indices]),
            "lm_head": lm_head,
        }
