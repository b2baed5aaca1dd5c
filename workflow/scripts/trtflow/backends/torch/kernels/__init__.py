"""trtflow's Triton kernels for the decode step (`decode: kernels`), one family a module:

    linear.py     the fused linear (layer norm, bias, GELU, residual, cache write or argmax in one kernel)
    operands.py   what the linear takes: how its layer norm is done, its epilogue, row statistics, argmax slots
    split.py      split-K: a linear's input width over several programs, their partial sums combined
    attention.py  decode attention over each row's filled cache slots
    fold.py       a layer norm folded into the linear after it
    row.py        one row's layer in three kernels (dense on attention's, proj on fc's, summed by atomic adds)
    step.py       GPT-2's decode step over the typed layers, and the step's bookkeeping kernel
    tuning.py     block-size candidates, timing them in a CUDA graph, the engine's tuning table
    launch.py     what every launch shares (row tiles, PDL, the CPU interpreter)

`kernels.linear` is the module; its launch of the same name is `kernels.linear.linear`.
"""

from .attention import attention
from .fold import FoldedLinear, fold
from .launch import MAX_BATCH, row_tile
from .linear import context_linear, lm_head_argmax, qkv_into_cache, shape_of
from .operands import NO_ARGMAX, Epilogue, Norm, argmax_of, argmax_slots, row_stats
from .step import FOLD_ROWS, KernelStep, NormWay, applies, finish_step, norm_way
from .tuning import TuningTable, covering, time_in_graph, time_step, tune

__all__ = ["FOLD_ROWS", "MAX_BATCH", "NO_ARGMAX", "Epilogue", "FoldedLinear", "KernelStep", "Norm", "NormWay",
           "TuningTable", "applies", "argmax_of", "argmax_slots", "attention", "context_linear", "covering",
           "finish_step", "fold", "lm_head_argmax", "norm_way", "qkv_into_cache", "row_stats", "row_tile",
           "shape_of", "time_in_graph", "time_step", "tune"]
