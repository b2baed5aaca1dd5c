"""A torch engine's weights as types: built once from the engine file's names, read by field everywhere after.

The engine file (rank{r}.safetensors) names its tensors `wte`, `wpe`, `ln_f.{weight,bias}`, optional
`lm_head.weight` and per layer `layers.{i}.{ln_1,qkv,dense,ln_2,fc,proj}.{weight,bias}`, with
`.per_channel_scale` beside each weight-only int8 linear. `GPT2Weights.from_engine` is the one place that reads
those names; the model, the CUDA-graph decoder and the kernels read `layer.qkv.weight`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .weight_only import SCALE

LAYER_LINEARS = ("qkv", "dense", "fc", "proj")
LAYER_NORMS = ("ln_1", "ln_2")


def nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass(frozen=True)
class Linear:
    """y = x·Wᵀ (· scale) + b: weight [out, in] in the compute dtype, or int8 with its per-output-channel scale."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def __post_init__(self):
        if (self.weight.dtype == torch.int8) != (self.scale is not None):
            raise ValueError("an int8 weight needs its per-channel scale, and only an int8 weight takes one")

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    def nbytes(self) -> int:
        return nbytes(self.weight, self.bias, self.scale)


@dataclass(frozen=True)
class LayerNorm:
    """(x - mean)·rstd·γ + β over the last dimension: γ and β stored together as params [2, H] (the kernels take
    one pointer)."""

    params: torch.Tensor
    eps: float

    @classmethod
    def of(cls, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> LayerNorm:
        return cls(torch.stack([weight, bias]).contiguous(), eps)

    @property
    def weight(self) -> torch.Tensor:
        return self.params[0]

    @property
    def bias(self) -> torch.Tensor:
        return self.params[1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.params.shape[1],), self.weight, self.bias, self.eps)

    def nbytes(self) -> int:
        return nbytes(self.params)


@dataclass(frozen=True)
class Layer:
    """One transformer block on this rank: qkv [3·h·d, H] (Q, K, V rows of this rank's h heads), dense [H, h·d],
    fc [I/tp, H], proj [H, I/tp]."""

    ln_1: LayerNorm
    qkv: Linear
    dense: Linear
    ln_2: LayerNorm
    fc: Linear
    proj: Linear

    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes() for f in fields(self))


@dataclass(frozen=True)
class GPT2Weights:
    wte: torch.Tensor
    wpe: torch.Tensor
    ln_f: LayerNorm
    lm_head: torch.Tensor  # wte itself where the head is tied
    layers: tuple[Layer, ...]

    @classmethod
    def from_engine(cls, tensors: dict[str, torch.Tensor], eps: float) -> GPT2Weights:
        """From one rank's engine tensors by name (the engine file's layout, above)."""
        def norm(name: str) -> LayerNorm:
            return LayerNorm.of(tensors[f"{name}.weight"], tensors[f"{name}.bias"], eps)

        def linear(name: str) -> Linear:
            return Linear(tensors[f"{name}.weight"], tensors.get(f"{name}.bias"), tensors.get(f"{name}.{SCALE}"))

        count = len({name.split(".")[1] for name in tensors if name.startswith("layers.")})
        layers = tuple(Layer(**{n: norm(f"layers.{i}.{n}") for n in LAYER_NORMS},
                             **{n: linear(f"layers.{i}.{n}") for n in LAYER_LINEARS}) for i in range(count))
        wte = tensors["wte"]
        return cls(wte=wte, wpe=tensors["wpe"], ln_f=norm("ln_f"), lm_head=tensors.get("lm_head.weight", wte),
                   layers=layers)

    @property
    def quantized(self) -> bool:
        return self.layers[0].qkv.quantized

    def nbytes(self) -> int:
        """Bytes on the device: every tensor once (a tied lm_head is wte)."""
        head = 0 if self.lm_head is self.wte else nbytes(self.lm_head)
        return nbytes(self.wte, self.wpe) + self.ln_f.nbytes() + head + sum(layer.nbytes() for layer in self.layers)
