"""The greedy decoder's state on the device, one set of tensors per captured batch size: what a CUDA graph's step
reads and updates in place, so that the loop needs no host sync."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DecodeState:
    tokens: torch.Tensor  # [B] the tokens the next step reads
    positions: torch.Tensor  # [B] their positions
    step: torch.Tensor  # [1] the column of `out` the next token goes to
    finished: torch.Tensor  # [B] rows that reached end_id
    end_id: torch.Tensor  # [1]
    stop_at_end: torch.Tensor  # [1] whether a finished row repeats end_id
    out: torch.Tensor  # [B, capacity] the tokens so far
    best: torch.Tensor | None = None  # [B] packed argmax slots (trtflow's kernels: kernels.argmax_slots)

    @classmethod
    def zeros(cls, batch: int, capacity: int, device: torch.device, best: torch.Tensor | None = None) -> DecodeState:
        longs = dict(dtype=torch.long, device=device)
        flags = dict(dtype=torch.bool, device=device)
        return cls(tokens=torch.zeros(batch, **longs), positions=torch.zeros(batch, **longs),
                   step=torch.zeros(1, **longs), finished=torch.zeros(batch, **flags), end_id=torch.zeros(1, **longs),
                   stop_at_end=torch.zeros(1, **flags), out=torch.zeros(batch, capacity, **longs), best=best)
