"""Tensor parallelism in one place: which GPT-2 tensor splits how, and how a rank's slice is cut.

Megatron-style, as TensorRT-LLM's GPT example does it (reference/trtllm.md §1.3, §5.1):

  QKV       c_attn, split by output columns per head group: each rank holds Q_r, K_r and V_r
  COLUMN    mlp c_fc, split by output columns (weight and bias)
  ROW       attention c_proj and mlp c_proj weights, split by input rows; their partial products
            are summed across ranks and the (replicated) bias is added once, after the sum
  REPLICATED  embeddings, layer norms, row-split biases and the lm_head; TensorRT-LLM 1.x's checkpoint
            alone cuts the lm_head by vocabulary instead (`shard_vocab`)

`SPLITS` is the only table of that knowledge: the c-model writer, the TensorRT-LLM 1.2 checkpoint
writer and the torch engine's re-layout all cut and lay out tensors through `shard` and `as_linear`.
The functions use slicing and reshapes only, so they work on numpy arrays and torch tensors alike.
Weights are in the HF Conv1D layout [in, out] unless a function says otherwise.
"""

from __future__ import annotations

from enum import Enum

from .errors import KnownError


class Split(Enum):
    QKV = "qkv"
    COLUMN = "column"
    ROW = "row"
    REPLICATED = "replicated"


# HF parameter suffix inside `transformer.h.{i}.` → how it splits.
LAYER_SPLITS = {
    "ln_1.weight": Split.REPLICATED,
    "ln_1.bias": Split.REPLICATED,
    "attn.c_attn.weight": Split.QKV,
    "attn.c_attn.bias": Split.QKV,
    "attn.c_proj.weight": Split.ROW,
    "attn.c_proj.bias": Split.REPLICATED,
    "ln_2.weight": Split.REPLICATED,
    "ln_2.bias": Split.REPLICATED,
    "mlp.c_fc.weight": Split.COLUMN,
    "mlp.c_fc.bias": Split.COLUMN,
    "mlp.c_proj.weight": Split.ROW,
    "mlp.c_proj.bias": Split.REPLICATED,
}
# Whole-model parameters.
GLOBAL_SPLITS = {
    "transformer.wte.weight": Split.REPLICATED,
    "transformer.wpe.weight": Split.REPLICATED,
    "transformer.ln_f.weight": Split.REPLICATED,
    "transformer.ln_f.bias": Split.REPLICATED,
    "lm_head.weight": Split.REPLICATED,
}


class SplitError(KnownError, ValueError):
    """A tensor-parallel degree that cannot split the model."""


def degrees(heads: int) -> list[int]:
    """The tensor-parallel degrees that split `heads` attention heads evenly."""
    return [d for d in range(1, heads + 1) if heads % d == 0]


def check_divisible(heads: int, tp: int, where: str) -> None:
    if tp < 1 or heads % tp:
        raise SplitError(f"{where} has {heads} attention heads, which {tp} does not divide; use a tp that divides "
                         f"the head count: {', '.join(map(str, degrees(heads)))}")


def split_of(hf_name: str) -> Split:
    """The split of an HF parameter, by its `transformer.`-prefixed name."""
    if hf_name in GLOBAL_SPLITS:
        return GLOBAL_SPLITS[hf_name]
    parts = hf_name.split(".", 3)  # transformer, h, {i}, suffix
    if len(parts) == 4 and parts[:2] == ["transformer", "h"] and parts[3] in LAYER_SPLITS:
        return LAYER_SPLITS[parts[3]]
    raise KeyError(f"{hf_name} is not a GPT-2 parameter")


def _cut(tensor, axis: int, tp: int, rank: int):
    size = tensor.shape[axis] // tp
    index = [slice(None)] * len(tensor.shape)
    index[axis] = slice(rank * size, (rank + 1) * size)
    return tensor[tuple(index)]


def shard(tensor, split: Split, tp: int, rank: int):
    """This rank's slice of an HF tensor (Conv1D layout [in, out]; biases [out]).

    QKV comes back as [..., 3, out/tp]: Q, K and V of this rank's heads (the c-model layout)."""
    if split is Split.REPLICATED:
        return tensor
    if split is Split.QKV:
        grouped = tensor.reshape(*tensor.shape[:-1], 3, tensor.shape[-1] // 3)
        return _cut(grouped, len(grouped.shape) - 1, tp, rank)
    if split is Split.COLUMN:
        return _cut(tensor, len(tensor.shape) - 1, tp, rank)
    if split is Split.ROW:
        return _cut(tensor, 0, tp, rank)
    raise ValueError(split)


def shard_shape(shape: tuple[int, ...], split: Split, tp: int) -> tuple[int, ...]:
    """The shape `shard` gives for an HF tensor of `shape`."""
    if split is Split.QKV:
        return (*shape[:-1], 3, shape[-1] // 3 // tp)
    if split is Split.COLUMN:
        return (*shape[:-1], shape[-1] // tp)
    if split is Split.ROW:
        return (shape[0] // tp, *shape[1:])
    return tuple(shape)


def as_linear(local, split: Split):
    """A Conv1D-layout shard as a linear's [out, in] weight (QKV rows Q_r | K_r | V_r), or a flat bias.

    Replicated tensors (embeddings, layer norms, row-split biases) are not linears' weights: unchanged."""
    if split is Split.REPLICATED:
        return local
    if split is Split.QKV:
        local = local.reshape(*local.shape[:-2], local.shape[-2] * local.shape[-1])
    return local.T if len(local.shape) == 2 else local


def padded_vocab(vocab: int, tp: int) -> int:
    return -(-vocab // tp) * tp


def shard_vocab(weight, tp: int, rank: int, pad):
    """A vocabulary-parallel slice of a [vocab, hidden] lm_head (TensorRT-LLM 1.x), padded with
    `pad(weight, rows)` to a multiple of tp first."""
    extra = padded_vocab(weight.shape[0], tp) - weight.shape[0]
    return _cut(pad(weight, extra) if extra else weight, 0, tp, rank)


def row_parallel(x, weight, bias, linear, all_reduce, world_size: int):
    """A row-split linear: every rank's partial product, summed across ranks, then the bias once.

    With one rank the bias is fused into the matmul (there is nothing to sum)."""
    if world_size == 1:
        return linear(x, weight, bias)
    return all_reduce(linear(x, weight, None)) + bias
