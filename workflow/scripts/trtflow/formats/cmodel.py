"""HF GPT-2 → FasterTransformer "c-model" shards, byte-compatible with TRT-LLM v0.8.0 hf_gpt_convert.py.

Each HF parameter is written under its c-model name, cut for each rank by the split `trtflow.tp` gives
it. Conv1D weights are [in, out] and are written as they are (no transposes), so a QKV shard is
[H, 3, H/tp] (bias [3, H/tp]); replicated tensors are written once, without a rank suffix.
Output goes to `{out}/{tp}-gpu/` (the stage CLI mirrors hf_gpt_convert.py's -i, -o, -tp, -t, -p).
"""

from __future__ import annotations

import configparser
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import tp as tensor_parallel
from ..gpt2 import ModelDims, global_shapes, layer_shapes
from ..tp import Split
from .artifact import atomic_dir, verify_manifest
from .hf import check_shapes, open_checkpoint
from .hf_config import CheckpointError, read_hf_config

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

LAYER_NAMES = {  # HF suffix inside transformer.h.{i}. → c-model stem inside model.layers.{i}.
    "ln_1.weight": "input_layernorm.weight",
    "ln_1.bias": "input_layernorm.bias",
    "attn.c_attn.weight": "attention.query_key_value.weight",
    "attn.c_attn.bias": "attention.query_key_value.bias",
    "attn.c_proj.weight": "attention.dense.weight",
    "attn.c_proj.bias": "attention.dense.bias",
    "ln_2.weight": "post_attention_layernorm.weight",
    "ln_2.bias": "post_attention_layernorm.bias",
    "mlp.c_fc.weight": "mlp.dense_h_to_4h.weight",
    "mlp.c_fc.bias": "mlp.dense_h_to_4h.bias",
    "mlp.c_proj.weight": "mlp.dense_4h_to_h.weight",
    "mlp.c_proj.bias": "mlp.dense_4h_to_h.bias",
}
GLOBAL_NAMES = {
    "transformer.wte.weight": "wte",
    "transformer.wpe.weight": "wpe",
    "transformer.ln_f.weight": "final_layernorm.weight",
    "transformer.ln_f.bias": "final_layernorm.bias",
    "lm_head.weight": "lm_head.weight",
}


def cmodel_stem(hf_name: str) -> str | None:
    """c-model stem (without `model.` and rank suffix) of an HF parameter name; None if not converted."""
    if hf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[hf_name]
    parts = hf_name.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["transformer", "h"] and parts[3] in LAYER_NAMES:
        return f"layers.{parts[2]}.{LAYER_NAMES[parts[3]]}"
    return None


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
    tensor_parallel.check_divisible(hf_config["n_head"], tp, str(hf_dir / "config.json"))
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
            stem = cmodel_stem(name)
            if stem is None:
                return
            split = tensor_parallel.split_of(name)
            tensor = reader.get(name).to(dtype)
            if split is Split.REPLICATED:
                write_raw(tensor, tmp / f"model.{stem}.bin")
            else:
                for rank in range(tp):
                    write_raw(tensor_parallel.shard(tensor, split, tp, rank), tmp / f"model.{stem}.{rank}.bin")
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
    """A c-model folder read back: its [gpt] settings and each rank's shards, keyed by HF parameter name
    (Conv1D layout, cut as `trtflow.tp.shard` cuts them)."""

    settings: dict[str, str]
    tp: int
    storage_type: str
    dims: ModelDims
    ranks: dict[int, dict[str, torch.Tensor]]

    @property
    def dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.storage_type]


def read_settings(folder: str | Path) -> dict[str, str]:
    """The [gpt] section of a c-model's config.ini (all values are strings, as hf_gpt_convert.py writes them)."""
    parser = configparser.ConfigParser()
    if not parser.read(Path(folder) / "config.ini") or "gpt" not in parser:
        raise CheckpointError(f"{Path(folder) / 'config.ini'} is missing; this is not a c-model folder")
    return dict(parser["gpt"])


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
    """Read a c-model folder (checking its manifest first)."""
    folder = Path(folder)
    if verify:
        verify_manifest(folder)
    settings = read_settings(folder)
    tp = int(settings["tensor_parallelism"])
    storage_type = settings.get("storage_dtype", "float32")
    dtype = TORCH_DTYPES[storage_type]
    dims = ModelDims.from_hf_config(settings)
    shapes = dict(global_shapes(dims))
    if (folder / "model.lm_head.weight.bin").is_file():
        shapes["lm_head.weight"] = (dims.vocab_size, dims.hidden)
    for layer in range(dims.layers):
        shapes.update({f"transformer.h.{layer}.{suffix}": shape for suffix, shape in layer_shapes(dims).items()})
    shared, split = {}, {}
    for name, shape in shapes.items():
        kind = tensor_parallel.split_of(name)
        if kind is Split.REPLICATED:
            shared[name] = _read_raw(folder / f"model.{cmodel_stem(name)}.bin", dtype, shape)
        else:
            split[name] = (kind, shape)
    out: dict[int, dict[str, torch.Tensor]] = {}
    for rank in ranks if ranks is not None else range(tp):
        out[rank] = dict(shared)
        for name, (kind, shape) in split.items():
            out[rank][name] = _read_raw(folder / f"model.{cmodel_stem(name)}.{rank}.bin", dtype,
                                        tensor_parallel.shard_shape(shape, kind, tp))
    return CModel(settings=settings, tp=tp, storage_type=storage_type, dims=dims, ranks=out)
