"""Tokenizer loading as run.py / summarize.py do it: left padding and left truncation."""

from __future__ import annotations

from pathlib import Path

from ..errors import KnownError


def load_tokenizer(hf_dir: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir, padding_side="left", truncation_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode(tokenizer, text: str, max_input_length: int) -> list[int]:
    """`--no_add_special_tokens`, truncated from the left to max_input_length (summarize.py)."""
    return tokenizer.encode(text, add_special_tokens=False, truncation=True, max_length=max_input_length)


def special_ids(hf_dir: str | Path) -> tuple[int, int]:
    """(end id, pad id) as v0.8.0 examples/utils.py load_tokenizer gives them to run.py and summarize.py:
    the tokenizer's eos token, and its pad token, which falls back to eos."""
    tokenizer = load_tokenizer(hf_dir)
    if tokenizer.eos_token_id is None:
        raise KnownError(f"the tokenizer in {hf_dir} has no end-of-sequence token, so generation could not stop: "
                         "give it one (eos_token in tokenizer_config.json) and rerun")
    return int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)
