"""Build a torch-backend engine: c-model shards → per-rank weights in the runtime's layout.

results/{model}/engines/tp{tp}/{build_key}/ holds config.json, rank{r}.safetensors and PROVENANCE.json
(plus MANIFEST.json). The weight files depend only on the c-model, so the same inputs give the same
bytes on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..artifact import atomic_dir
from ..cmodel import load_cmodel
from ..config import TORCH_BACKEND_VERSION
from ..provenance import provenance

FORMAT_VERSION = 1

# What each build flag means for this backend; flags absent here are honoured by the runtime.
NOT_APPLICABLE = {
    "use_gemm_plugin": "matmuls always go through torch (cuBLAS / CPU BLAS)",
    "enable_context_fmha": "scaled_dot_product_attention picks its own fused kernel",
    "enable_context_fmha_fp32_acc": "scaled_dot_product_attention picks its own fused kernel",
    "use_inflight_batching": "batches are static; its implications (plugin, padding removal, paged KV) apply",
}


def not_applicable(flags: dict) -> dict[str, str]:
    notes = {k: v for k, v in NOT_APPLICABLE.items() if flags.get(k)}
    if flags["cuda_graphs"] and flags["paged_kv_cache"]:
        notes["cuda_graphs"] = "graphs need the static contiguous KV cache; paged engines decode eagerly"
    if flags["torch_compile"] and not flags["cuda_graphs"]:
        notes["torch_compile"] = "compiles the graph-captured decode step; has no effect without cuda_graphs"
    return notes


def runtime_layout(tensors: dict[str, torch.Tensor], layers: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """c-model names and [in, out] shards → engine names, [out, in] linears, QKV rows Q|K|V."""
    out = {
        "wte": tensors["wte"], "wpe": tensors["wpe"],
        "ln_f.weight": tensors["final_layernorm.weight"], "ln_f.bias": tensors["final_layernorm.bias"],
    }
    if "lm_head.weight" in tensors:
        out["lm_head.weight"] = tensors["lm_head.weight"]
    for i in range(layers):
        c, e = f"layers.{i}.", f"layers.{i}."
        qkv = tensors[c + "attention.query_key_value.weight"]  # [H, 3, H/tp]
        out[e + "qkv.weight"] = qkv.permute(1, 2, 0).reshape(-1, qkv.shape[0])  # [3·H/tp, H]
        out[e + "qkv.bias"] = tensors[c + "attention.query_key_value.bias"].reshape(-1)
        out[e + "dense.weight"] = tensors[c + "attention.dense.weight"].t()
        out[e + "dense.bias"] = tensors[c + "attention.dense.bias"]
        out[e + "fc.weight"] = tensors[c + "mlp.dense_h_to_4h.weight"].t()
        out[e + "fc.bias"] = tensors[c + "mlp.dense_h_to_4h.bias"]
        out[e + "proj.weight"] = tensors[c + "mlp.dense_4h_to_h.weight"].t()
        out[e + "proj.bias"] = tensors[c + "mlp.dense_4h_to_h.bias"]
        for cn, en in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            out[f"{e}{en}.weight"] = tensors[f"{c}{cn}.weight"]
            out[f"{e}{en}.bias"] = tensors[f"{c}{cn}.bias"]
    return {k: v.to(dtype).contiguous() for k, v in out.items()}


def model_dims(settings: dict[str, str]) -> dict:
    hidden = int(settings["n_embd"])
    inner = settings.get("n_inner")
    return {
        "vocab_size": int(settings["vocab_size"]), "hidden": hidden, "heads": int(settings["n_head"]),
        "layers": int(settings["n_layer"]), "positions": int(settings["n_positions"]),
        "inner": int(inner) if inner not in (None, "None") else 4 * hidden,
        "eps": float(settings.get("layer_norm_epsilon", "1e-5")),
        "activation": settings.get("activation_function", "gelu_new"),
        "tied": settings.get("tie_word_embeddings", "True") == "True",
    }


def _token_id(settings: dict[str, str], key: str, fallback: int) -> int:
    value = settings.get(key)
    return int(value) if value not in (None, "None") else fallback


def build(cmodel_dir: str | Path, out_dir: str | Path, flags: dict, build_key: str) -> Path:
    cmodel = load_cmodel(cmodel_dir)
    dims = model_dims(cmodel.settings)
    if dims["heads"] % cmodel.tp:
        raise ValueError(f"{cmodel_dir}: {dims['heads']} heads are not divisible by tp {cmodel.tp}")
    end_id = _token_id(cmodel.settings, "eos_token_id", 50256)
    config = {
        "backend": "torch",
        "backend_version": TORCH_BACKEND_VERSION,
        "format_version": FORMAT_VERSION,
        "build_key": build_key,
        "world_size": cmodel.tp,
        "dtype": str(cmodel.dtype).removeprefix("torch."),
        "model": dims,
        "build": flags,
        "runtime": {
            "attention": "sdpa" if flags["use_gpt_attention_plugin"] else "math",
            "remove_input_padding": flags["remove_input_padding"],
            "kv_cache": "paged" if flags["paged_kv_cache"] else "contiguous",
            "tokens_per_block": flags["tokens_per_block"],
            "cuda_graphs": flags["cuda_graphs"],
            "torch_compile": flags["torch_compile"],
        },
        "not_applicable": not_applicable(flags),
        "end_id": end_id,
        "pad_id": _token_id(cmodel.settings, "pad_token_id", end_id),
        "files": [f"rank{r}.safetensors" for r in range(cmodel.tp)],
        "source": str(cmodel_dir),
    }
    meta = {"kind": "engine", "backend": "torch", "build_key": build_key, "tp": cmodel.tp}
    with atomic_dir(out_dir, meta) as tmp:
        for rank, tensors in cmodel.ranks.items():
            save_file(runtime_layout(tensors, dims["layers"], cmodel.dtype), tmp / f"rank{rank}.safetensors")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        record = provenance({"build_key": build_key, "backend": "torch", "build": flags, "tp": cmodel.tp,
                             "source": str(cmodel_dir)})
        (tmp / "PROVENANCE.json").write_text(json.dumps(record, indent=2) + "\n")
    return Path(out_dir)
