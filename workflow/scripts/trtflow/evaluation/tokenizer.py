"""Tokenizer loading as run.py / summarize.py do it: no special tokens added, left truncation, decoding that
skips special tokens, end id = eos, pad id = pad or else eos (v0.8.0 examples/utils.py load_tokenizer).

Engine jobs read the checkpoint's tokenizer.json with the `tokenizers` library, the same Rust tokenizer
transformers' fast tokenizers wrap: importing transformers cost 9-11 s per job on the H100 box. A folder
without tokenizer.json falls back to transformers' AutoTokenizer. tests/test_evaluate.py checks both give
the same ids and texts.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import KnownError

GPT2_EOS = "<|endoftext|>"  # GPT2Tokenizer's own default when tokenizer_config.json names none


def _token(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


class FastTokenizer:
    def __init__(self, hf_dir: Path):
        from tokenizers import Tokenizer

        settings_file = hf_dir / "tokenizer_config.json"
        settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
        self._tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        eos = _token(settings.get("eos_token", GPT2_EOS))
        pad = _token(settings.get("pad_token"))
        self.eos_token_id = self._tokenizer.token_to_id(eos) if eos else None
        self.pad_token_id = self._tokenizer.token_to_id(pad) if pad else self.eos_token_id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        # clean_up_tokenization_spaces is not applied: transformers 5 ignores it for BPE tokenizers like GPT-2's
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


class TransformersTokenizer:
    def __init__(self, hf_dir: Path):
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(hf_dir, padding_side="left", truncation_side="left")
        self.eos_token_id = self._tokenizer.eos_token_id
        self.pad_token_id = self._tokenizer.pad_token_id
        if self.pad_token_id is None:
            self.pad_token_id = self.eos_token_id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def load_tokenizer(hf_dir: str | Path, fast: bool = True) -> FastTokenizer | TransformersTokenizer:
    hf_dir = Path(hf_dir)
    if fast and (hf_dir / "tokenizer.json").is_file():
        return FastTokenizer(hf_dir)
    return TransformersTokenizer(hf_dir)


def encode(tokenizer, text: str, max_input_length: int) -> list[int]:
    """`--no_add_special_tokens`, truncated from the left to max_input_length (summarize.py): the last tokens of the
    whole text, found by encoding only a tail of it (a 50 MB article once took 9.5 GB and minutes)."""
    window = max(4096, 16 * max_input_length)
    while window < len(text):
        cut = _word_start(text, len(text) - window)
        if cut is not None:
            ids = tokenizer.encode(text[cut:], add_special_tokens=False)
            if len(ids) >= max_input_length:
                return ids[-max_input_length:]
        window *= 4
    return tokenizer.encode(text, add_special_tokens=False)[-max_input_length:]


def _word_start(text: str, start: int) -> int | None:
    """The first single space at or after `start` between two non-space characters: GPT-2's byte-level
    pre-tokenizer starts a piece there (" word"), so the tokens after it are those of the whole text."""
    index = text.find(" ", max(start, 1))
    while index != -1 and index + 1 < len(text):
        if not text[index - 1].isspace() and not text[index + 1].isspace():
            return index
        index = text.find(" ", index + 1)
    return None


def token_ids(hf_dir: str | Path, tokenizer: FastTokenizer | TransformersTokenizer | None = None) -> dict[str, int]:
    """{"end_id", "pad_id"} as v0.8.0 examples/utils.py load_tokenizer gives them to run.py and summarize.py:
    the tokenizer's eos token, and its pad token, which falls back to eos. Pass `tokenizer` where it is loaded."""
    tokenizer = load_tokenizer(hf_dir) if tokenizer is None else tokenizer
    if tokenizer.eos_token_id is None:
        raise KnownError(f"the tokenizer in {hf_dir} has no end-of-sequence token, so generation could not stop: "
                         "give it one (eos_token in tokenizer_config.json) and rerun")
    return {"end_id": int(tokenizer.eos_token_id), "pad_id": int(tokenizer.pad_token_id)}
