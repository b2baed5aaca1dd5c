"""HF GPT-2 → TensorRT-LLM 1.2 checkpoint (what examples/models/core/gpt/convert_checkpoint.py writes).

config.json (a PretrainedConfig) + rank{r}.safetensors. Each tensor is cut by the split `trtflow.tp`
gives it and stored as TensorRT-LLM's linears want it, [out, in] (reference/trtllm.md §5.1): QKV per
rank is cat(Q_r, K_r, V_r) on dim 0, the lm_head is vocabulary-parallel (padded to a multiple of tp),
embeddings and layer norms are replicated.

Weight-only quantization (`--use_weight_only --weight_only_precision int8|int4` of 1.x's convert_checkpoint.py)
is written as 1.x's own loader takes it: the `quantization` block names the algorithm (W8A16 / W4A16, as
convert_checkpoint.py's args_to_quant_config sets it) and the linears stay in the checkpoint dtype; trtllm-build
then quantizes every qkv/dense/fc/proj weight that is not int8 yet while it loads the checkpoint
(models/modeling_utils.py PretrainedModel.from_checkpoint → preprocess_weights → convert_utils
weight_only_quantize_dict). convert_checkpoint.py instead stores them quantized already, through
torch.ops.trtllm.symmetric_quantize_last_axis_of_batched_matrix, whose output is interleaved for the mixed-GEMM
kernel of the GPU it runs on (cutlass_preprocessors.cpp preprocess_weights_for_mixed_gemm reads the SM). A
conversion on a CPU, as here, cannot know that GPU, so the quantization is left to the build, which runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import tp as tensor_parallel
from .artifact import atomic_dir
from .cmodel import TORCH_DTYPES
from .hf import check_shapes, open_checkpoint
from .hf_config import read_hf_config

LAYER_NAMES = {  # HF suffix inside transformer.h.{i}. → TensorRT-LLM name inside transformer.layers.{i}.
    "ln_1.weight": "input_layernorm.weight", "ln_1.bias": "input_layernorm.bias",
    "attn.c_attn.weight": "attention.qkv.weight", "attn.c_attn.bias": "attention.qkv.bias",
    "attn.c_proj.weight": "attention.dense.weight", "attn.c_proj.bias": "attention.dense.bias",
    "ln_2.weight": "post_layernorm.weight", "ln_2.bias": "post_layernorm.bias",
    "mlp.c_fc.weight": "mlp.fc.weight", "mlp.c_fc.bias": "mlp.fc.bias",
    "mlp.c_proj.weight": "mlp.proj.weight", "mlp.c_proj.bias": "mlp.proj.bias",
}
GLOBAL_NAMES = {
    "transformer.wte.weight": "transformer.vocab_embedding.weight",
    "transformer.wpe.weight": "transformer.position_embedding.weight",
    "transformer.ln_f.weight": "transformer.ln_f.weight",
    "transformer.ln_f.bias": "transformer.ln_f.bias",
}


def _pad_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.nn.functional.pad(weight, (0, 0, 0, rows))


def rank_weights(get, config: dict, tp: int, rank: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One rank's tensors; `get(name)` returns an HF tensor by its transformer.-prefixed name."""

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype).contiguous()

    out = {trt: cast(get(hf)) for hf, trt in GLOBAL_NAMES.items()}
    for layer in range(config["n_layer"]):
        for suffix, trt in LAYER_NAMES.items():
            hf_name = f"transformer.h.{layer}.{suffix}"
            split = tensor_parallel.split_of(hf_name)
            local = tensor_parallel.shard(get(hf_name), split, tp, rank)
            out[f"transformer.layers.{layer}.{trt}"] = cast(tensor_parallel.as_linear(local, split))
    lm_head = get("transformer.wte.weight" if config["tie_word_embeddings"] else "lm_head.weight")
    # never share storage with wte
    out["lm_head.weight"] = cast(tensor_parallel.shard_vocab(lm_head, tp, rank, _pad_rows)).clone()
    return out


# convert_checkpoint.py args_to_quant_config: --weight_only_precision → QuantConfig.quant_algo
WEIGHT_ONLY_ALGOS = {"int8": "W8A16", "int4": "W4A16"}


def pretrained_config(config: dict, tp: int, dtype: str, weight_only_precision: str | None = None) -> dict:
    """config.json as 1.x's convert_checkpoint.py writes it for GPT-2: GPTConfig.from_hugging_face(...)
    .to_dict(), field by field and in its order (NVIDIA/TensorRT-LLM, tensorrt_llm/models/gpt/config.py and
    modeling_utils.PretrainedConfig / QuantConfig / Mapping on the 1.0-1.2 line). The architecture is the HF
    config's own (`GPT2LMHeadModel`, registered in MODEL_MAP); rotary_pct is the 1.0 default GPT-2 configs do
    not override (unused: positions are learned). `moe` is left out: the reader builds its default."""
    hidden, heads = config["n_embd"], config["n_head"]
    architectures = config.get("architectures") or ["GPT2LMHeadModel"]
    return {
        "gpt_variant": "gpt2",
        "bias": True,
        "q_scaling": 1,
        "embedding_scale": None,
        "apply_query_key_layer_scaling": False,
        "rotary_pct": 1.0,
        "rotary_base": 10000.0,
        "rotary_scaling": None,
        "inner_layernorm": False,
        "norm_before_bmm1": False,
        "architecture": architectures[0],
        "dtype": dtype,
        "vocab_size": config["vocab_size"],
        "hidden_size": hidden,
        "num_hidden_layers": config["n_layer"],
        "num_attention_heads": heads,
        "hidden_act": config.get("activation_function", "gelu_new"),
        "logits_dtype": "float32",
        "norm_epsilon": config.get("layer_norm_epsilon", 1e-5),
        "runtime_defaults": None,
        "position_embedding_type": "learned_absolute",
        "num_key_value_heads": heads,
        "intermediate_size": config.get("n_inner") or 4 * hidden,
        "max_position_embeddings": config["n_positions"],
        "mapping": {"world_size": tp, "gpus_per_node": 8, "cp_size": 1, "tp_size": tp, "pp_size": 1,
                    "moe_tp_size": tp, "moe_cluster_size": 1, "moe_ep_size": 1, "attn_tp_size": tp,
                    "attn_cp_size": 1},
        "quantization": {"quant_algo": WEIGHT_ONLY_ALGOS.get(weight_only_precision), "kv_cache_quant_algo": None,
                         "group_size": 128, "smoothquant_val": 0.5,
                         "clamp_val": None, "use_meta_recipe": False, "has_zero_point": False,
                         "pre_quant_scale": False, "exclude_modules": None},
        "use_parallel_embedding": False,
        "embedding_sharding_dim": 0,
        "head_size": hidden // heads,
        "qk_layernorm": False,
        "rotary_embedding_dim": hidden // heads,
    }


def convert(hf_dir: str | Path, out_dir: str | Path, tp: int, dtype: str = "float16",
            weight_only_precision: str | None = None) -> Path:
    hf_dir = Path(hf_dir)
    config = read_hf_config(hf_dir)
    tensor_parallel.check_divisible(config["n_head"], tp, str(hf_dir / "config.json"))
    reader = open_checkpoint(hf_dir)
    check_shapes(reader, config, str(hf_dir))
    meta = {"kind": "trtllm-checkpoint", "format": "tensorrt_llm 1.2", "tp": tp, "dtype": dtype,
            "weight_only_precision": weight_only_precision, "source": str(hf_dir)}
    with atomic_dir(out_dir, meta) as tmp:
        record = pretrained_config(config, tp, dtype, weight_only_precision)
        (tmp / "config.json").write_text(json.dumps(record, indent=2) + "\n")
        for rank in range(tp):
            save_file(rank_weights(reader.get, config, tp, rank, TORCH_DTYPES[dtype]), tmp / f"rank{rank}.safetensors")
    reader.close()
    return Path(out_dir)
