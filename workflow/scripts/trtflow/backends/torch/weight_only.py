"""Weight-only int8 quantization, as TensorRT-LLM does it (`--use_weight_only --weight_only_precision int8`).

Per output channel, symmetric: scale = max |w| over the channel's inputs / 128, q = round(w / scale) clipped
to [-128, 127], round half away from zero, the scale stored in the engine dtype. Transcribed from
`symmetric_quantize` in cpp/tensorrt_llm/kernels/cutlass_kernels/cutlass_preprocessors.cpp (quant_range_scale
= 1 / 2^(bits-1)), which both v0.8.0 (examples/gpt/weight.py) and 1.x (models/convert_utils.py
weight_only_quantize) call through torch.ops.trtllm.symmetric_quantize_last_axis_of_batched_matrix; the
kernel-specific interleaving that op adds afterwards is TensorRT's concern and not reproduced. Quantized are
the linears that 1.x's weight_only_quantize_dict names (qkv, dense, fc, proj); embeddings, layer norms and the
lm_head stay in the engine dtype.

Each rank quantizes its own shard, as both TensorRT-LLM flows do, so a row-split layer's scales are those of
the rank's input rows. At run time the int8 weight is widened inside the matmul and the product scaled per
output channel: x·(q·s)ᵀ = (x·qᵀ)·s.
"""

from __future__ import annotations

import torch

QUANTIZED_LINEARS = ("qkv", "dense", "fc", "proj")
SCALE = "per_channel_scale"


def is_quantized_linear(name: str) -> bool:
    """Engine weight names `layers.{i}.{linear}.weight` of the linears weight-only quantization applies to."""
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "layers" and parts[2] in QUANTIZED_LINEARS and parts[3] == "weight"


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] → (int8 [out, in], scales [out] in the weight's dtype)."""
    values = weight.float()
    scale = values.abs().amax(dim=1) / 128
    scaled = torch.where(scale[:, None] != 0, values / scale[:, None], torch.zeros_like(values))
    rounded = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)  # C round(): half away from zero
    return rounded.clamp(-128, 127).to(torch.int8), scale.to(weight.dtype)


def quantize_weights(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An engine rank's weights with its quantized linears as int8 plus `<linear>.per_channel_scale`."""
    out = {}
    for name, tensor in weights.items():
        if is_quantized_linear(name):
            out[name], out[name.removesuffix("weight") + SCALE] = quantize_int8(tensor)
        else:
            out[name] = tensor
    return dict(sorted(out.items()))


def dequantizing(linear, scale: torch.Tensor):
    """`linear(x, weight, bias)` over an int8 weight: widened to x's dtype inside the matmul, scaled per channel."""

    def apply(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        out = linear(x, weight.to(x.dtype), None) * scale
        return out if bias is None else out + bias

    return apply
