"""A Hugging Face GPT-2 checkpoint folder without importing torch (the DAG reads it too): its config.json, read and
checked, and the names of its weight files."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import KnownError

# the weight files save_pretrained() writes, safetensors first; each whole, or in shards named by its index
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def index_of(weight_file: str) -> str:
    """The index save_pretrained() writes beside the shards of `weight_file`."""
    return f"{weight_file}.index.json"


class CheckpointError(KnownError, ValueError):
    """The checkpoint folder cannot be read as a GPT-2 checkpoint."""


def read_hf_config(hf_dir: str | Path) -> dict:
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a Hugging Face checkpoint folder needs its config.json "
                              "(save the model with save_pretrained, or fix models.<name>.path)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(config, dict) or config.get("model_type") != "gpt2":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointError(f"{path} has model_type {kind!r}; trtflow converts GPT-2 "
                              "checkpoints only (model_type 'gpt2')")
    for key in ("n_head", "n_embd", "n_layer", "n_positions", "vocab_size"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"{path}: {key} is {value!r}; GPT-2's config.json gives it as a whole number ≥ 1 "
                                  "(fix the file, or re-save the model with save_pretrained)")
    if config["n_embd"] % config["n_head"]:
        raise CheckpointError(f"{path}: n_embd {config['n_embd']} is not a multiple of n_head {config['n_head']}; "
                              "the file does not describe a GPT-2 model")
    config.setdefault("n_inner", None)
    config.setdefault("tie_word_embeddings", True)
    return config
