"""The demo model's recipe: every setting that determines its bytes (and so its identity in the keys)."""

from __future__ import annotations

from dataclasses import dataclass

# where it trains: its bytes differ by device. "auto" (the default) is settled before any job: the GPU where the
# jobs have one (dag.settle_machine), else the CPU; the recipe then names "cuda", or nothing for the CPU.
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that determines the demo model's bytes (also part of its build-key identity)."""

    vocab_size: int = 2048
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 1024
    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-3
    summary_weight: float = 4.0
    seed: int = 0
    threads: int = 2  # the CPU's (a GPU's training is deterministic by torch's own settings)
    device: str = "cpu"
