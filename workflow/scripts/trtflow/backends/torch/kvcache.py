"""KV caches: one contiguous slab per sequence, or a pool of fixed-size blocks behind a block table.

Both take `write(layer, seq_ids, positions, kv)` for a list of tokens (kv [n, 2, heads, head_dim]: the K
and V rows of the fused QKV output, written in one kernel) and answer `read(layer, span)` with the first
`span` slots of every sequence as K and V [B, heads, span, head_dim]. Each layer has its own tensor.
"""

from __future__ import annotations

import math

import torch


class KVCache:
    def write(self, layer: int, seq_ids: torch.Tensor, positions: torch.Tensor, kv: torch.Tensor) -> None:
        raise NotImplementedError

    def read(self, layer: int, span: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class ContiguousKV(KVCache):
    """kv[layer]: [B, 2, heads, capacity, head_dim]."""

    def __init__(self, layers: int, batch: int, heads: int, capacity: int, head_dim: int, dtype, device):
        self.kv = [torch.zeros(batch, 2, heads, capacity, head_dim, dtype=dtype, device=device)
                   for _ in range(layers)]
        self.capacity = capacity

    def write(self, layer, seq_ids, positions, kv):
        self.kv[layer][seq_ids, :, :, positions] = kv

    def read(self, layer, span):
        slab = self.kv[layer][:, :, :, :span]
        return slab[:, 0], slab[:, 1]

    def rows(self, batch: int) -> ContiguousKV:
        """The first `batch` sequences' slots, sharing this cache's memory."""
        view = object.__new__(ContiguousKV)
        view.kv, view.capacity = [t[:batch] for t in self.kv], self.capacity
        return view


class PagedKV(KVCache):
    """Blocks of `block_size` tokens; `table[b, j]` is the pool block holding tokens j·bs … (j+1)·bs-1 of b.

    Blocks are handed out round-robin across sequences as they would be when sequences grow step by
    step, so neighbouring blocks of one sequence are not neighbours in the pool.
    """

    def __init__(self, layers: int, lengths: list[int], heads: int, block_size: int, head_dim: int, dtype, device):
        blocks_needed = [math.ceil(n / block_size) for n in lengths]
        self.block_size = block_size
        self.max_blocks = max(blocks_needed)
        table = torch.zeros(len(lengths), self.max_blocks, dtype=torch.long)
        next_free = 0
        for j in range(self.max_blocks):
            for b, needed in enumerate(blocks_needed):
                if j < needed:
                    table[b, j] = next_free
                    next_free += 1
        self.table = table.to(device)
        self.pool = [torch.zeros(next_free, 2, heads, block_size, head_dim, dtype=dtype, device=device)
                     for _ in range(layers)]

    def write(self, layer, seq_ids, positions, kv):
        blocks = self.table[seq_ids, positions // self.block_size]
        self.pool[layer][blocks, :, :, positions % self.block_size] = kv

    def read(self, layer, span):
        n_blocks = math.ceil(span / self.block_size)
        blocks = self.pool[layer][self.table[:, :n_blocks]]  # [B, n, 2, h, bs, d]
        b, n, _, h, bs, d = blocks.shape
        slab = blocks.permute(0, 2, 3, 1, 4, 5).reshape(b, 2, h, n * bs, d)[:, :, :, :span]
        return slab[:, 0], slab[:, 1]
