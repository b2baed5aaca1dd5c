"""Read a Hugging Face GPT-2 checkpoint tensor by tensor, without holding the model twice.

`model.safetensors` is memory-mapped and each tensor is a zero-copy view of the mapping; the pages of a
tensor are given back (madvise) once it has been converted, so peak memory stays near one tensor.
`pytorch_model.bin` is loaded with `torch.load(mmap=True)`. Names are normalised to the
`transformer.`-prefixed names that `GPT2LMHeadModel.named_parameters()` yields (hub GPT-2 files omit the
prefix), and buffers (`attn.bias`, `attn.masked_bias`) are dropped, as hf_gpt_convert.py does.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from pathlib import Path

import torch

from ..gpt2 import ModelDims, global_shapes, layer_shapes
from .hf_config import WEIGHT_FILES, CheckpointError, index_of

SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "F64": torch.float64, "I64": torch.int64, "U8": torch.uint8}
PAGE = mmap.PAGESIZE


def _normalise(name: str) -> str | None:
    if name.endswith((".attn.bias", ".attn.masked_bias")):
        return None
    if name.startswith("lm_head."):
        return name
    return name if name.startswith("transformer.") else f"transformer.{name}"


class SafetensorsReader:
    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        self._file = open(path, "rb")
        head = self._file.read(8)
        if head.startswith(b"version ") and b"git-lfs" in head + self._file.read(64):
            raise CheckpointError(f"{path} is a git-lfs pointer, not the weights (the repository was cloned "
                                  "without git-lfs): run `git lfs pull` there, or download the files themselves")
        try:
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:  # text saved under this name (an HTML error page) reads as a huge length
                raise ValueError(f"its header claims {header_len} bytes of a {size}-byte file")
            self._file.seek(8)
            header = json.loads(self._file.read(header_len))
            if not isinstance(header, dict):
                raise ValueError("its header is not a JSON object")
        except (struct.error, ValueError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path} is not a safetensors file ({err}); re-download or re-save it") from err
        self._base = 8 + header_len
        header.pop("__metadata__", None)
        self._entries = {}
        for raw_name, entry in header.items():
            start, end = entry["data_offsets"]
            if self._base + end > size:
                raise CheckpointError(f"{path} is truncated: tensor {raw_name} ends at byte {self._base + end} "
                                      f"but the file has {size} bytes; re-download or re-save the checkpoint")
            itemsize = SAFETENSORS_DTYPES[entry["dtype"]].itemsize if entry["dtype"] in SAFETENSORS_DTYPES else None
            count = math.prod(entry["shape"])
            if itemsize and (end - start != count * itemsize or start > end):
                raise CheckpointError(f"{path}: tensor {raw_name} has offsets {start}..{end} ({end - start} bytes) "
                                      f"but its shape {entry['shape']} in {entry['dtype']} needs {count * itemsize}; "
                                      "the file is damaged: re-download or re-save the checkpoint")
            name = _normalise(raw_name)
            if name:
                self._entries[name] = (entry["dtype"], entry["shape"], start, end)
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_COPY)

    def names(self) -> list[str]:
        return list(self._entries)

    def numel(self, name: str) -> int:
        _, shape, _, _ = self._entries[name]
        return math.prod(shape)

    def get(self, name: str) -> torch.Tensor:
        dtype, shape, start, end = self._entries[name]
        if dtype not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{self.path}: tensor {name} has unsupported dtype {dtype}")
        torch_dtype = SAFETENSORS_DTYPES[dtype]
        count = (end - start) // torch_dtype.itemsize
        flat = torch.frombuffer(self._map, dtype=torch_dtype, count=count, offset=self._base + start)
        return flat.reshape(shape)

    def release(self, name: str) -> None:
        """Give the pages of a converted tensor back to the OS (they are re-read if touched again)."""
        _, _, start, end = self._entries[name]
        lo = (self._base + start) // PAGE * PAGE
        hi = self._base + end
        if hasattr(self._map, "madvise") and hi > lo:
            self._map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def close(self) -> None:
        self._file.close()


class TorchBinReader:
    def __init__(self, path: Path):
        self.path = path
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except Exception as err:  # torch raises several types for a bad archive
            raise CheckpointError(f"{path} cannot be loaded as a PyTorch state dict ({err}); re-download or "
                                  "re-save the checkpoint") from err
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path} is not a state dict of tensors (found {type(state).__name__}); "
                                  "save it with model.save_pretrained()")
        self._state = {}
        for raw_name, tensor in state.items():
            name = _normalise(raw_name)
            if name:
                self._state[name] = tensor

    def names(self) -> list[str]:
        return list(self._state)

    def get(self, name: str) -> torch.Tensor:
        return self._state[name]

    def numel(self, name: str) -> int:
        return self._state[name].numel()

    def release(self, name: str) -> None:
        self._state.pop(name, None)

    def close(self) -> None:
        self._state.clear()


class ShardedReader:
    """A checkpoint save_pretrained() split into shards (model-00001-of-0000N.safetensors, …) with its index, whose
    weight_map names each tensor's shard: one reader a shard, each tensor read from its own."""

    def __init__(self, index: Path, reader):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{index} is not a checkpoint index (JSON with a weight_map): {err}; "
                                  "re-save the model with save_pretrained()") from err
        files = sorted(set(weight_map.values()))
        missing = [name for name in files if not (index.parent / name).is_file()]
        if missing:
            raise CheckpointError(f"{index} names shards that are missing: {', '.join(missing)}; download every "
                                  "shard (models.<name>.include) or re-save the model")
        self._shards = {name: reader(index.parent / name) for name in files}
        self._where = {}
        for shard in self._shards.values():
            self._where.update(dict.fromkeys(shard.names(), shard))

    def names(self) -> list[str]:
        return list(self._where)

    def numel(self, name: str) -> int:
        return self._where[name].numel(name)

    def get(self, name: str) -> torch.Tensor:
        return self._where[name].get(name)

    def release(self, name: str) -> None:
        self._where[name].release(name)

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()


def open_checkpoint(hf_dir: str | Path):
    hf_dir = Path(hf_dir)
    for filename, reader in zip(WEIGHT_FILES, (SafetensorsReader, TorchBinReader), strict=True):
        if (hf_dir / filename).is_file():
            return reader(hf_dir / filename)
        if (hf_dir / index_of(filename)).is_file():
            return ShardedReader(hf_dir / index_of(filename), reader)
    raise CheckpointError(f"{hf_dir} has neither model.safetensors nor pytorch_model.bin (nor a sharded one with its "
                          ".index.json); point the model at a folder written by save_pretrained()")


def check_shapes(reader, config: dict, where: str) -> None:
    """Catch a checkpoint whose tensors disagree with its config.json before converting anything: every tensor of
    GPT-2 in its Conv1D layout ([in, out], gpt2.layer_shapes), since a transposed weight of the same element count
    would convert and run, and generate nonsense."""
    dims = ModelDims.from_hf_config(config)
    names = set(reader.names())
    shapes = {name: list(shape) for name, shape in global_shapes(dims).items() if name != "lm_head.weight"}
    embeddings = {name: shapes.pop(name) for name in ("transformer.wte.weight", "transformer.wpe.weight")}
    _check_tensors(reader, names, embeddings, where, "the weights do not belong to a GPT-2 model",
                   lambda shape: f"but config.json says {shape} (vocab_size / n_embd / n_positions); the weights and "
                                 "config.json disagree")
    for layer in range(dims.layers):
        if f"transformer.h.{layer}.attn.c_attn.weight" not in names:
            raise CheckpointError(f"{where}: layer {layer} is missing (config.json says n_layer "
                                  f"{dims.layers}); the checkpoint is incomplete")
    shapes.update({f"transformer.h.{layer}.{part}": list(shape) for layer in range(dims.layers)
                   for part, shape in layer_shapes(dims).items()})
    _check_tensors(reader, names, shapes, where, "the checkpoint is incomplete or not GPT-2's",
                   lambda shape: f"where GPT-2 with config.json's n_embd {dims.hidden} (n_inner {dims.inner}) has "
                                 f"{shape} (Conv1D layout, [in, out]); the weights were saved in another layout or do "
                                 "not belong to this config.json")


def check_checkpoint(hf_dir: str | Path) -> None:
    """check_shapes on a checkpoint folder, for a reader that allocates what config.json says before it reads a
    tensor (transformers' from_pretrained: an absurd n_embd is petabytes there, one line here)."""
    from .hf_config import read_hf_config

    reader = open_checkpoint(hf_dir)
    try:
        check_shapes(reader, read_hf_config(Path(hf_dir)), str(hf_dir))
    finally:
        reader.close()


def _check_tensors(reader, names: set[str], wanted: dict[str, list[int]], where: str, missing: str, disagree) -> None:
    """Each tensor of `wanted` present with its shape; else one line: `missing`, or `disagree(shape)`."""
    for name, shape in wanted.items():
        if name not in names:
            raise CheckpointError(f"{where}: tensor {name} is missing; {missing}")
        actual = list(reader.get(name).shape)
        if actual != shape:
            raise CheckpointError(f"{where}: {name} has shape {actual} {disagree(shape)}")
