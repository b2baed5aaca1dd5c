"""Build a torch-backend engine: c-model shards → per-rank weights in the runtime's layout.

results/{model}/engines/tp{tp}/{build_key}/ holds config.json, rank{r}.safetensors and PROVENANCE.json
(plus MANIFEST.json). config.json records the normalised build flags once; the runtime derives its
options from them (`BuildFlags.runtime`). The weight files depend only on the c-model, so the same
inputs give the same bytes on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ... import tp as tensor_parallel
from ...flags import TORCH_BACKEND_VERSION, BuildFlags
from ...formats.artifact import atomic_dir, size_on_disk
from ...formats.cmodel import load_cmodel
from ...formats.provenance import provenance
from ...infra.dist import init_distributed
from . import compiled
from .engine_format import FORMAT_VERSION
from .generator import TorchEngineGenerator
from .weight_only import quantize_weights

# HF names inside `transformer.h.{i}.` / whole-model HF names → engine names.
LAYER_NAMES = {"ln_1": "ln_1", "attn.c_attn": "qkv", "attn.c_proj": "dense", "ln_2": "ln_2", "mlp.c_fc": "fc",
               "mlp.c_proj": "proj"}
GLOBAL_NAMES = {"transformer.wte.weight": "wte", "transformer.wpe.weight": "wpe",
                "transformer.ln_f.weight": "ln_f.weight", "transformer.ln_f.bias": "ln_f.bias",
                "lm_head.weight": "lm_head.weight"}

# What each build flag means for this backend; flags absent here are honoured by the runtime.
NOT_APPLICABLE = {
    "use_gemm_plugin": "matmuls always go through torch (cuBLAS / CPU BLAS)",
    "enable_context_fmha": "scaled_dot_product_attention picks its own fused kernel",
    "enable_context_fmha_fp32_acc": "scaled_dot_product_attention picks its own fused kernel",
    "use_inflight_batching": "batches are static; its implications (plugin, padding removal, paged KV) apply",
}


def not_applicable(flags: BuildFlags, tp: int) -> dict[str, str]:
    notes = {k: v for k, v in NOT_APPLICABLE.items() if getattr(flags, k)}
    if flags.cuda_graphs and flags.paged_kv_cache:
        notes["cuda_graphs"] = "graphs need the static contiguous KV cache; paged engines decode eagerly"
    elif flags.cuda_graphs and tp > 1:
        notes["cuda_graphs"] = ("at tp > 1 the static cache decodes uncaptured: a captured step with NCCL all-reduces "
                                "hung on two H100s")
    if flags.torch_compile and not flags.cuda_graphs:
        notes["torch_compile"] = "compiles the graph-captured decode step; has no effect without cuda_graphs"
    return notes


def engine_name(hf_name: str) -> str:
    if hf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf_name]
    _, _, layer, suffix = hf_name.split(".", 3)
    module, part = suffix.rsplit(".", 1)
    return f"layers.{layer}.{LAYER_NAMES[module]}.{part}"


def runtime_layout(shards: dict[str, torch.Tensor], dtype: torch.dtype,
                   weight_only: str | None = None) -> dict[str, torch.Tensor]:
    """One rank's c-model shards (Conv1D layout) → engine names, [out, in] linears, QKV rows Q|K|V; with
    `weight_only` ("int8"), the rank's linears quantized as TensorRT-LLM does (weight_only.py)."""
    out = {}
    for hf_name, local in shards.items():
        out[engine_name(hf_name)] = tensor_parallel.as_linear(local, tensor_parallel.split_of(hf_name))
    out = {k: v.to(dtype).contiguous() for k, v in sorted(out.items())}
    return quantize_weights(out) if weight_only else out


def compile_into(engine_dir: Path, batch_sizes: list[int]) -> dict | None:
    """Compile (and capture) the decode step of the engine in `engine_dir` for `batch_sizes`, and store the
    compiler's artifacts there (`decode: kernels`: tune its kernels for those and every row tile below the largest,
    kernels.covering, and with weight-only int8 for the context's row tile). Returns the record for config.json;
    None without a GPU (nothing to compile)."""
    if not torch.cuda.is_available():
        return None
    engine = TorchEngineGenerator(engine_dir, init_distributed(), verify=False)
    step = engine.static.kernels if engine.static is not None else None
    if step is not None:
        from . import kernels

        asked = batch_sizes
        batch_sizes = kernels.covering(batch_sizes)
        # weight-only int8 contexts of up to MAX_BATCH tokens run the kernels too (kernels.context_linear)
        limits = engine.limits
        context = [min(kernels.MAX_BATCH, limits["max_batch_size"] * limits["max_input_len"])]
        rows = kernels.covering(batch_sizes + context * engine.flags.use_weight_only)
        for tile in sorted({kernels.row_tile(count) for count in rows}):
            if engine.static.uses_kernels(tile):
                # a choice per row tile, which every batch padding to it shares: ranked in the step at the largest
                # batch the jobs asked for in the tile (else the tile's, up to max_batch_size), since the best
                # blocks for 8 rows are not those for 16; a context's tile above max_batch_size, alone
                batch = max((b for b in asked if kernels.row_tile(b) == tile),
                            default=min(tile, limits["max_batch_size"]))
                in_step = kernels.row_tile(batch) == tile
                kernels.tune(step, batch if in_step else tile, engine.static.cache.rows(batch).kv if in_step else None)
    prompt = [1] * 8
    for batch in batch_sizes:
        engine.generate([prompt] * batch, 4, ignore_eos=True)
    record = {"file": None, "batch_sizes": batch_sizes, **compiled.toolchain()}
    if step is not None:
        record["kernels"] = engine.tuning.to_json()  # the block sizes chosen for trtflow's kernels
    if all(engine.static.uses_kernels(batch) for batch in batch_sizes):
        return record  # trtflow's kernels only: torch.compile never ran for this engine
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        raise RuntimeError("torch.compile left no cache artifacts to store: the decode step was not compiled")
    (engine_dir / compiled.ARTIFACT).parent.mkdir(exist_ok=True)
    (engine_dir / compiled.ARTIFACT).write_bytes(saved[0])
    return {**record, "file": compiled.ARTIFACT}


def build(cmodel_dir: str | Path, out_dir: str | Path, flags: BuildFlags, build_key: str,
          token_ids: dict[str, int], compile_batch_sizes: list[int] | None = None) -> Path:
    """With torch_compile where the step is captured (BuildFlags.compiles_at_build) and a GPU here, the decode
    step is compiled for `compile_batch_sizes` (default: 1 and max_batch_size) and stored in the folder."""
    cmodel = load_cmodel(cmodel_dir)
    tensor_parallel.check_divisible(cmodel.dims.heads, cmodel.tp, str(cmodel_dir))
    config = {
        "backend": "torch",
        "backend_version": TORCH_BACKEND_VERSION,
        "format_version": FORMAT_VERSION,
        "build_key": build_key,
        "world_size": cmodel.tp,
        "dtype": cmodel.storage_type,
        "model": cmodel.dims.to_json(),
        "build": flags.to_json(),
        "not_applicable": not_applicable(flags, cmodel.tp),
        "end_id": token_ids["end_id"],
        "pad_id": token_ids["pad_id"],
        "files": [f"rank{r}.safetensors" for r in range(cmodel.tp)],
        "source": str(cmodel_dir),
    }
    meta = {"kind": "engine", "backend": "torch", "build_key": build_key, "tp": cmodel.tp}
    # the engine holds the c-model's tensors again, in its dtype or smaller (weight-only): refused up front without room
    with atomic_dir(out_dir, meta, needed_bytes=size_on_disk(Path(cmodel_dir))) as tmp:
        for rank, shards in cmodel.ranks.items():
            save_file(runtime_layout(shards, cmodel.dtype, flags.weight_only_precision),
                      tmp / f"rank{rank}.safetensors")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if flags.compiles_at_build(cmodel.tp):
            sizes = sorted(set(compile_batch_sizes or [1, flags.max_batch_size]))
            record = compile_into(tmp, sizes)
            if record:
                config["compiled"] = record
                (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        record = provenance({"build_key": build_key, "backend": "torch", "build": flags.to_json(), "tp": cmodel.tp,
                             "source": str(cmodel_dir)})
        (tmp / "PROVENANCE.json").write_text(json.dumps(record, indent=2) + "\n")
    return Path(out_dir)
