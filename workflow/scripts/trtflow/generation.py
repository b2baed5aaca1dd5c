"""The generation interface every backend and the Hugging Face reference implement: token ids in, token ids out.

The harnesses (generate, summarize, benchmark) only use what `Generator` declares, so ROUGE and timings
are computed the same way for the torch engine, a TensorRT-LLM engine and Hugging Face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import KnownError


class EngineLimitError(KnownError, ValueError):
    """A request that does not fit the engine's build limits (max batch / input / output)."""


class EngineMismatchError(KnownError, RuntimeError):
    """An engine folder this runtime cannot run (other backend, format, world size, toolchain or files)."""


@dataclass(frozen=True)
class Sampling:
    """run.py's sampling flags; top_k 1 (the default) is greedy."""

    top_k: int = 1
    top_p: float = 0.0
    temperature: float = 1.0
    num_beams: int = 1
    random_seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.top_k == 1 or self.temperature == 0


@dataclass
class GenerationResult:
    output_ids: list[list[int]]  # generated tokens only, stopped before end_id
    context_s: float  # prompt phase until the first token exists (nan where the backend cannot tell)
    total_s: float
    info: dict = field(default_factory=dict)


class Generator(Protocol):
    vocab_size: int
    end_id: int
    pad_id: int
    device: Any  # torch.device
    compute_dtype: str

    def check_limits(self, batch: list[list[int]], max_new_tokens: int) -> None: ...

    def generate(self, batch: list[list[int]], max_new_tokens: int, sampling: Sampling = Sampling(),
                 end_id: int | None = None, ignore_eos: bool = False) -> GenerationResult: ...


def enforce_limits(limits: dict, batch: list[list[int]], max_new_tokens: int) -> None:
    """Refuse a request beyond the engine's build limits (max_batch_size / max_input_len / max_output_len)."""
    if not batch or any(len(p) == 0 for p in batch):
        raise EngineLimitError("every prompt needs at least one token")
    for value, key, what in ((len(batch), "max_batch_size", "batch size"),
                             (max(len(p) for p in batch), "max_input_len", "input length"),
                             (max_new_tokens, "max_output_len", "output length")):
        if value > limits[key]:
            raise EngineLimitError(f"{what} {value} > the engine's {key} {limits[key]}; rebuild with a larger "
                                   f"build.{key}" + ("" if key != "max_input_len" else ", or truncate the input"))


def cut_at_end(rows: list[list[int]], end_id: int) -> list[list[int]]:
    """Each row up to (not including) its first end_id."""
    return [row[: row.index(end_id)] if end_id in row else row for row in rows]


def dtype_name(dtype: Any) -> str:
    """'float16' for torch.float16 or 'float16'."""
    return str(dtype).removeprefix("torch.")
