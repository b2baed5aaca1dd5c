"""KV caches: one contiguous slab per sequence, or a pool of fixed-size blocks behind a block table.

Both answer `write(layer, seq_ids, positions, k, v)` for a list of tokens and `read(layer, span)` for the
first `span` slots of every sequence as [B, heads, span, head_dim].
"""

from __future__ import annotations

import math

import torch


class KVCache:
    def write(self, layer: int, seq_ids: torch.Tensor, positions: torch.Tensor, k: torch.Tensor,
              v: torch.Tensor) -> None:
        raise NotImplementedError

    def read(self, layer: int, span: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class ContiguousKV(KVCache):
    def __init__(self, layers: int, batch: int, heads: int, capacity: int, head_dim: int, dtype, device):
        shape = (layers, batch, heads, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity = capacity

    def write(self, layer, seq_ids, positions, k, v):
        self.k[layer][seq_ids, :, positions] = k
        self.v[layer][seq_ids, :, positions] = v

    def read(self, layer, span):
        return self.k[layer][:, :, :span], self.v[layer][:, :, :span]

    def rows(self, batch: int) -> ContiguousKV:
        """The first `batch` sequences' slots, sharing this cache's memory."""
        view = object.__new__(ContiguousKV)
        view.k, view.v, view.capacity = self.k[:, :batch], self.v[:, :batch], self.capacity
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
        shape = (layers, next_free, heads, block_size, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    def write(self, layer, seq_ids, positions, k, v):
        blocks = self.table[seq_ids, positions // self.block_size]
        offsets = positions % self.block_size
        self.k[layer][blocks, :, offsets] = k
        self.v[layer][blocks, :, offsets] = v

    def read(self, layer, span):
        n_blocks = math.ceil(span / self.block_size)
        table = self.table[:, :n_blocks]

        def gather(pool: torch.Tensor) -> torch.Tensor:
            blocks = pool[table]  # [B, n, h, bs, d]
            b, n, h, bs, d = blocks.shape
            return blocks.permute(0, 2, 1, 3, 4).reshape(b, h, n * bs, d)[:, :, :span]

        return gather(self.k[layer]), gather(self.v[layer])
