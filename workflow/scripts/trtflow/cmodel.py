"""HF GPT-2 → FasterTransformer "c-model" shards, byte-compatible with TRT-LLM v0.8.0 hf_gpt_convert.py.

The split rules (reference/trtllm.md §1.3) in one table: each HF parameter maps to a c-model stem and
a split. Conv1D weights are [in, out] and are written as they are (no transposes):

  qkv      c_attn [H,3H] → [H,3,H] split on the last axis → [H,3,H/tp] per rank (bias [3,H/tp])
  columns  split on the last axis (mlp fc weight and bias)
  rows     split on axis 0 (attention dense and mlp proj weights)
  full     written once, unsplit (embeddings, layer norms, row-split biases)

CLI flags mirror hf_gpt_convert.py (-i, -o, -tp, -t, -p); output goes to `{out}/{tp}-gpu/`.
"""

from __future__ import annotations

import argparse
import configparser
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifact import atomic_dir, verify_manifest
from .checkpoint import CheckpointError, check_shapes, open_checkpoint, read_hf_config

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

LAYER_MAP = {  # HF suffix inside transformer.h.{i}. → (c-model stem inside model.layers.{i}., split)
    "ln_1.weight": ("input_layernorm.weight", "full"),
    "ln_1.bias": ("input_layernorm.bias", "full"),
    "attn.c_attn.weight": ("attention.query_key_value.weight", "qkv"),
    "attn.c_attn.bias": ("attention.query_key_value.bias", "qkv"),
    "attn.c_proj.weight": ("attention.dense.weight", "rows"),
    "attn.c_proj.bias": ("attention.dense.bias", "full"),
    "ln_2.weight": ("post_attention_layernorm.weight", "full"),
    "ln_2.bias": ("post_attention_layernorm.bias", "full"),
    "mlp.c_fc.weight": ("mlp.dense_h_to_4h.weight", "columns"),
    "mlp.c_fc.bias": ("mlp.dense_h_to_4h.bias", "columns"),
    "mlp.c_proj.weight": ("mlp.dense_4h_to_h.weight", "rows"),
    "mlp.c_proj.bias": ("mlp.dense_4h_to_h.bias", "full"),
}
GLOBAL_MAP = {
    "transformer.wte.weight": "wte",
    "transformer.wpe.weight": "wpe",
    "transformer.ln_f.weight": "final_layernorm.weight",
    "transformer.ln_f.bias": "final_layernorm.bias",
    "lm_head.weight": "lm_head.weight",
}
LAYER_NAME = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")


def cmodel_target(hf_name: str) -> tuple[str, str] | None:
    """c-model stem (without `model.` and rank suffix) and split kind for an HF parameter name."""
    if hf_name in GLOBAL_MAP:
        return GLOBAL_MAP[hf_name], "full"
    match = LAYER_NAME.match(hf_name)
    if match and match.group(2) in LAYER_MAP:
        stem, split = LAYER_MAP[match.group(2)]
        return f"layers.{match.group(1)}.{stem}", split
    return None


def split_for_rank(tensor: torch.Tensor, split: str, tp: int, rank: int) -> torch.Tensor:
    if split == "qkv":
        hidden = tensor.shape[-1] // 3
        qkv = tensor.reshape(*tensor.shape[:-1], 3, hidden)
        return qkv.chunk(tp, dim=-1)[rank]
    if split == "columns":
        return tensor.chunk(tp, dim=-1)[rank]
    if split == "rows":
        return tensor.chunk(tp, dim=0)[rank]
    raise ValueError(split)


def write_raw(tensor: torch.Tensor, path: Path) -> None:
    """Raw C-order bytes, no header; bfloat16 as 2-byte words (numpy has no bfloat16)."""
    tensor = tensor.contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    tensor.numpy().tofile(path)


def config_ini(args: dict, hf_dir: Path, storage_type: str) -> configparser.ConfigParser:
    """[gpt] section in hf_gpt_convert.py's order: the 11 CLI args, vars(model.config), two extras."""
    from transformers import AutoConfig

    parser = configparser.ConfigParser()
    parser["gpt"] = {}
    for key, value in args.items():
        parser["gpt"][key] = f"{value}"
    for key, value in vars(AutoConfig.from_pretrained(hf_dir)).items():
        parser["gpt"][key] = f"{value}"
    parser["gpt"]["storage_dtype"] = storage_type
    parser["gpt"]["multi_query_mode"] = str(False)
    return parser


def convert(hf_dir: str | Path, out_root: str | Path, tp: int, storage_type: str = "float32",
            processes: int = 4, progress: bool = True) -> Path:
    hf_dir, out_root = Path(hf_dir), Path(out_root)
    hf_config = read_hf_config(hf_dir)
    if hf_config["n_head"] % tp:
        raise CheckpointError(f"{hf_dir / 'config.json'}: n_head {hf_config['n_head']} is not divisible by "
                              f"tp {tp}; use a tp that divides the head count")
    dtype = TORCH_DTYPES[storage_type]
    reader = open_checkpoint(hf_dir)
    check_shapes(reader, hf_config, str(hf_dir))
    args = {"out_dir": out_root, "in_file": hf_dir, "tensor_parallelism": tp, "processes": processes,
            "calibrate_kv_cache": False, "smoothquant": None, "model": "gpt2", "storage_type": storage_type,
            "dataset_cache_dir": None, "load_model_on_cpu": False, "convert_model_on_cpu": False}
    names = [n for n in reader.names() if ("weight" in n or "bias" in n)]
    if hf_config["tie_word_embeddings"]:
        names = [n for n in names if n != "lm_head.weight"]  # tied: named_parameters() de-duplicates it

    target = out_root / f"{tp}-gpu"
    meta = {"kind": "c-model", "tp": tp, "storage_type": storage_type, "source": str(hf_dir)}
    needed = sum(reader.numel(n) for n in names) * dtype.itemsize
    with atomic_dir(target, meta, needed_bytes=needed) as tmp:
        with open(tmp / "config.ini", "w", encoding="utf-8") as handle:
            config_ini(args, hf_dir, storage_type).write(handle)

        def convert_one(name: str) -> None:
            mapped = cmodel_target(name)
            if mapped is None:
                return
            stem, split = mapped
            tensor = reader.get(name).to(dtype)
            if split == "full":
                write_raw(tensor, tmp / f"model.{stem}.bin")
            else:
                for rank in range(tp):
                    write_raw(split_for_rank(tensor, split, tp, rank), tmp / f"model.{stem}.{rank}.bin")
            del tensor
            reader.release(name)

        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=max(1, processes)) as pool:
            jobs = pool.map(convert_one, names)
            for _ in tqdm(jobs, total=len(names), desc=f"convert tp{tp} {storage_type}", unit="tensor",
                          disable=not progress, mininterval=1.0):
                pass
    reader.close()
    return target


# --------------------------------------------------------------------------- reading back


@dataclass
class CModel:
    """A c-model folder read back: the [gpt] settings and each rank's tensors."""

    settings: dict[str, str]
    tp: int
    dtype: torch.dtype
    ranks: dict[int, dict[str, torch.Tensor]]

    def dim(self, key: str) -> int:
        return int(self.settings[key])


def _read_raw(path: Path, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the c-model; delete the folder and rerun the conversion")
    np_dtype = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.int16}[dtype]
    array = np.fromfile(path, dtype=np_dtype)
    expected = int(np.prod(shape))
    if array.size != expected:
        raise CheckpointError(f"{path} holds {array.size} values but {expected} are expected for shape "
                              f"{list(shape)}; the shard is truncated or from another model — reconvert")
    tensor = torch.from_numpy(array)
    if dtype == torch.bfloat16:
        tensor = tensor.view(torch.bfloat16)
    return tensor.reshape(shape)


def load_cmodel(folder: str | Path, ranks: list[int] | None = None, verify: bool = True) -> CModel:
    """Read a c-model folder (checking its manifest); returns per-rank tensors keyed by c-model stem."""
    folder = Path(folder)
    if verify:
        verify_manifest(folder)
    parser = configparser.ConfigParser()
    if not parser.read(folder / "config.ini"):
        raise CheckpointError(f"{folder / 'config.ini'} is missing; this is not a c-model folder")
    settings = dict(parser["gpt"])
    tp = int(settings["tensor_parallelism"])
    dtype = TORCH_DTYPES[settings.get("storage_dtype", "float32")]
    hidden, layers = int(settings["n_embd"]), int(settings["n_layer"])
    inner = int(settings["n_inner"]) if settings.get("n_inner") not in (None, "None") else 4 * hidden
    vocab, positions = int(settings["vocab_size"]), int(settings["n_positions"])
    full_shapes = {"wte": (vocab, hidden), "wpe": (positions, hidden),
                   "final_layernorm.weight": (hidden,), "final_layernorm.bias": (hidden,)}
    if (folder / "model.lm_head.weight.bin").is_file():
        full_shapes["lm_head.weight"] = (vocab, hidden)
    layer_shapes = {
        "input_layernorm.weight": (hidden,), "input_layernorm.bias": (hidden,),
        "attention.query_key_value.weight": (hidden, 3, hidden // tp),
        "attention.query_key_value.bias": (3, hidden // tp),
        "attention.dense.weight": (hidden // tp, hidden), "attention.dense.bias": (hidden,),
        "post_attention_layernorm.weight": (hidden,), "post_attention_layernorm.bias": (hidden,),
        "mlp.dense_h_to_4h.weight": (hidden, inner // tp), "mlp.dense_h_to_4h.bias": (inner // tp,),
        "mlp.dense_4h_to_h.weight": (inner // tp, hidden), "mlp.dense_4h_to_h.bias": (hidden,),
    }
    split_stems = {stem for stem, split in LAYER_MAP.values() if split != "full"}
    shared = {stem: _read_raw(folder / f"model.{stem}.bin", dtype, shape) for stem, shape in full_shapes.items()}
    for layer in range(layers):
        for stem, shape in layer_shapes.items():
            if stem not in split_stems:
                key = f"layers.{layer}.{stem}"
                shared[key] = _read_raw(folder / f"model.{key}.bin", dtype, shape)
    out: dict[int, dict[str, torch.Tensor]] = {}
    for rank in ranks if ranks is not None else range(tp):
        tensors = dict(shared)
        for layer in range(layers):
            for stem in split_stems:
                key = f"layers.{layer}.{stem}"
                tensors[key] = _read_raw(folder / f"model.{key}.{rank}.bin", dtype, layer_shapes[stem])
        out[rank] = tensors
    return CModel(settings=settings, tp=tp, dtype=dtype, ranks=out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert a HF GPT-2 checkpoint to c-model shards "
                                     "(TRT-LLM v0.8.0 hf_gpt_convert.py format).")
    parser.add_argument("--in-file", "-i", required=True, help="HF checkpoint folder")
    parser.add_argument("--out-dir", "-o", required=True, help="output root; files go to OUT/{tp}-gpu/")
    parser.add_argument("--tensor-parallelism", "-tp", type=int, default=1)
    parser.add_argument("--storage-type", "-t", choices=list(TORCH_DTYPES), default="float32")
    parser.add_argument("--processes", "-p", type=int, default=4)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    target = convert(args.in_file, args.out_dir, args.tensor_parallelism, args.storage_type, args.processes)
    print(f"wrote {target} in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
