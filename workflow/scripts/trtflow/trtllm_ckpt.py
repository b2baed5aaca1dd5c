"""HF GPT-2 → TensorRT-LLM 1.2 checkpoint (what examples/models/core/gpt/convert_checkpoint.py writes).

config.json (a PretrainedConfig) + rank{r}.safetensors, weights as [out, in] (Conv1D transposed),
reference/trtllm.md §5.1: QKV per rank is cat(Q_r, K_r, V_r) on dim 0, attention dense and mlp proj
split on dim 1, mlp fc on dim 0, lm_head padded to a multiple of tp and split on the vocab, embeddings
replicated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .artifact import atomic_dir
from .checkpoint import CheckpointError, check_shapes, open_checkpoint, read_hf_config
from .cmodel import TORCH_DTYPES


def rank_weights(get, config: dict, tp: int, rank: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """One rank's tensors; `get(name)` returns an HF tensor by its transformer.-prefixed name."""
    hidden = config["n_embd"]

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype).contiguous()

    out = {
        "transformer.vocab_embedding.weight": cast(get("transformer.wte.weight")),
        "transformer.position_embedding.weight": cast(get("transformer.wpe.weight")),
        "transformer.ln_f.weight": cast(get("transformer.ln_f.weight")),
        "transformer.ln_f.bias": cast(get("transformer.ln_f.bias")),
    }
    for layer in range(config["n_layer"]):
        hf = f"transformer.h.{layer}."
        trt = f"transformer.layers.{layer}."
        qkv_w = get(hf + "attn.c_attn.weight").t()  # [3H, H]
        qkv_b = get(hf + "attn.c_attn.bias")
        q_w, k_w, v_w = qkv_w.split(hidden, dim=0)
        q_b, k_b, v_b = qkv_b.split(hidden, dim=0)
        out[trt + "attention.qkv.weight"] = cast(torch.cat([t.chunk(tp, 0)[rank] for t in (q_w, k_w, v_w)]))
        out[trt + "attention.qkv.bias"] = cast(torch.cat([t.chunk(tp, 0)[rank] for t in (q_b, k_b, v_b)]))
        out[trt + "attention.dense.weight"] = cast(get(hf + "attn.c_proj.weight").t().chunk(tp, 1)[rank])
        out[trt + "attention.dense.bias"] = cast(get(hf + "attn.c_proj.bias"))
        out[trt + "mlp.fc.weight"] = cast(get(hf + "mlp.c_fc.weight").t().chunk(tp, 0)[rank])
        out[trt + "mlp.fc.bias"] = cast(get(hf + "mlp.c_fc.bias").chunk(tp, 0)[rank])
        out[trt + "mlp.proj.weight"] = cast(get(hf + "mlp.c_proj.weight").t().chunk(tp, 1)[rank])
        out[trt + "mlp.proj.bias"] = cast(get(hf + "mlp.c_proj.bias"))
        for hf_ln, trt_ln in (("ln_1", "input_layernorm"), ("ln_2", "post_layernorm")):
            for part in ("weight", "bias"):
                out[f"{trt}{trt_ln}.{part}"] = cast(get(f"{hf}{hf_ln}.{part}"))
    tied = config["tie_word_embeddings"]
    lm_head = get("transformer.wte.weight" if tied else "lm_head.weight")
    vocab = lm_head.shape[0]
    padded = -(-vocab // tp) * tp
    if padded != vocab:
        lm_head = torch.nn.functional.pad(lm_head, (0, 0, 0, padded - vocab))
    out["lm_head.weight"] = cast(lm_head.chunk(tp, 0)[rank]).clone()  # never share storage with wte
    return out


def pretrained_config(config: dict, tp: int, dtype: str) -> dict:
    hidden = config["n_embd"]
    return {
        "architecture": "GPTForCausalLM",
        "dtype": dtype,
        "vocab_size": config["vocab_size"],
        "hidden_size": hidden,
        "num_hidden_layers": config["n_layer"],
        "num_attention_heads": config["n_head"],
        "num_key_value_heads": config["n_head"],
        "hidden_act": config.get("activation_function", "gelu_new"),
        "intermediate_size": config["n_inner"] or 4 * hidden,
        "norm_epsilon": config.get("layer_norm_epsilon", 1e-5),
        "position_embedding_type": "learned_absolute",
        "max_position_embeddings": config["n_positions"],
        "mapping": {"world_size": tp, "tp_size": tp, "pp_size": 1},
        "quantization": {"quant_algo": None, "kv_cache_quant_algo": None},
        "use_parallel_embedding": False,
        "embedding_sharding_dim": 0,
        "gpt_variant": "gpt2",
        "bias": True,
        "apply_query_key_layer_scaling": False,
        "rotary_pct": 0.0,
        "rotary_base": 10000.0,
    }


def convert(hf_dir: str | Path, out_dir: str | Path, tp: int, dtype: str = "float16") -> Path:
    hf_dir = Path(hf_dir)
    config = read_hf_config(hf_dir)
    if config["n_head"] % tp:
        raise CheckpointError(f"{hf_dir / 'config.json'}: n_head {config['n_head']} is not divisible by tp {tp}")
    reader = open_checkpoint(hf_dir)
    check_shapes(reader, config, str(hf_dir))
    meta = {"kind": "trtllm-checkpoint", "format": "tensorrt_llm 1.2", "tp": tp, "dtype": dtype,
            "source": str(hf_dir)}
    with atomic_dir(out_dir, meta) as tmp:
        (tmp / "config.json").write_text(json.dumps(pretrained_config(config, tp, dtype), indent=2) + "\n")
        for rank in range(tp):
            save_file(rank_weights(reader.get, config, tp, rank, TORCH_DTYPES[dtype]), tmp / f"rank{rank}.safetensors")
    reader.close()
    return Path(out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a TensorRT-LLM 1.2 GPT checkpoint from a HF GPT-2.")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--tp_size", type=int, default=1)
    parser.add_argument("--dtype", choices=list(TORCH_DTYPES), default="float16")
    args = parser.parse_args(argv)
    print(f"wrote {convert(args.model_dir, args.output_dir, args.tp_size, args.dtype)}")


if __name__ == "__main__":
    main()
