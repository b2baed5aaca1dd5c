"""The tensor-parallel split table (trtflow.tp): every GPT-2 tensor has one split, shards recompose, and a
row-split linear adds its bias once."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from trtflow import tp
from trtflow.tp import Split


@pytest.fixture(scope="module")
def hf_state(tiny_gpt2) -> dict[str, torch.Tensor]:
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(tiny_gpt2)
    return {name: param.detach() for name, param in model.named_parameters()}


def recompose(shards: list, split: Split):
    if split is Split.REPLICATED:
        return shards[0]
    if split is Split.QKV:
        grouped = torch.cat(shards, dim=-1)  # [..., 3, out]
        return grouped.reshape(*grouped.shape[:-2], -1)
    return torch.cat(shards, dim=-1 if split is Split.COLUMN else 0)


@pytest.mark.parametrize("degree", [1, 2, 4])
def test_every_parameter_has_a_split_and_its_shards_recompose(hf_state, degree):
    assert {tp.split_of(name) for name in hf_state} == set(Split)
    for name, tensor in hf_state.items():
        split = tp.split_of(name)
        shards = [tp.shard(tensor, split, degree, rank) for rank in range(degree)]
        assert all(tuple(s.shape) == tp.shard_shape(tuple(tensor.shape), split, degree) for s in shards), name
        assert torch.equal(recompose(shards, split), tensor), name


def test_shards_work_on_numpy_arrays_too(hf_state):
    weight = hf_state["transformer.h.0.attn.c_attn.weight"]
    for rank in range(2):
        assert np.array_equal(tp.shard(weight.numpy(), Split.QKV, 2, rank), tp.shard(weight, Split.QKV, 2, rank).numpy())


def test_qkv_as_a_linear_is_q_k_v_of_this_ranks_heads(hf_state):
    weight, hidden = hf_state["transformer.h.1.attn.c_attn.weight"], 64  # [in, 3·out]
    q, k, v = weight.t().split(hidden, dim=0)  # each [out, in]
    for rank in range(4):
        expected = torch.cat([part.chunk(4, dim=0)[rank] for part in (q, k, v)])
        assert torch.equal(tp.as_linear(tp.shard(weight, Split.QKV, 4, rank), Split.QKV), expected)


def test_unknown_parameter_has_no_split():
    with pytest.raises(KeyError, match="not a GPT-2 parameter"):
        tp.split_of("transformer.h.0.attn.rotary.inv_freq")


def test_check_divisible_names_the_degrees_that_work():
    tp.check_divisible(6, 3, "model x")
    with pytest.raises(tp.SplitError, match=r"model x has 6 attention heads, which 4 does not divide; .* 1, 2, 3, 6$"):
        tp.check_divisible(6, 4, "model x")


def test_row_parallel_adds_the_bias_once_after_the_sum():
    """Three ranks whose partial products are zero: the result is the bias to the bit. Adding bias/3 on each rank
    before the sum (the old way) is not exact when tp is not a power of two."""
    bias = torch.tensor([0.1, 0.7, 1.3, 2.9, 1e-3, 123.456], dtype=torch.float32)
    x, weight = torch.zeros(1, 4), torch.randn(6, 4)
    summed_over_3 = lambda t: t + t + t  # noqa: E731  (the all-reduce of three equal partials)
    out = tp.row_parallel(x, weight, bias, torch.nn.functional.linear, summed_over_3, world_size=3)
    assert torch.equal(out[0], bias)
    third = bias / 3
    assert not torch.equal(third + third + third, bias)  # what the test guards against
    fused = tp.row_parallel(x, weight, bias, torch.nn.functional.linear, summed_over_3, world_size=1)
    assert torch.equal(fused[0], bias)  # one rank: the bias is fused into the matmul, nothing summed
