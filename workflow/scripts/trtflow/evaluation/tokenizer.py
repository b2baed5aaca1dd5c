"""Tokenizer loading as run.py / summarize.py do it: left padding and left truncation."""

from __future__ import annotations

from pathlib import Path


def load_tokenizer(hf_dir: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir, padding_side="left", truncation_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def encode(tokenizer, text: str, max_input_length: int) -> list[int]:
    """`--no_add_special_tokens`, truncated from the left to max_input_length (summarize.py)."""
    return tokenizer.encode(text, add_special_tokens=False, truncation=True, max_length=max_input_length)
