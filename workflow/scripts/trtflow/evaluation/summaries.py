"""One side of summarize.py's comparison: generate summaries of the first max_ite batches, time them, score them.

The data and prompt are TRT-LLM v0.8.0 summarize.py's: `article + ' TL;DR: '`, stripped, " n't" → "n't",
left-truncated to max_input_length tokens; the first max_ite batches of batch_size examples in order; one
untimed warm-up batch (example 0); output_len new tokens, greedy; outputs decoded after the input with special
tokens skipped. Latency per batch covers tokenize + generate + decode, as its profiler does. Used for the engine
(stages.summarize) and for Hugging Face (stages.hf_summarize) alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..generation import GenerationResult, Sampling
from .prompts import summarize_prompt
from .rouge import score
from .tokenizer import encode


@dataclass(frozen=True)
class SummarySettings:
    max_ite: int
    batch_size: int
    output_len: int
    max_input_length: int


def run_side(generator, tokenizer, rows: list[dict], args: SummarySettings, label: str, is_main: bool) -> dict | None:
    """Every rank generates (the engine's ranks work together); only rank 0 has the texts to score
    (a TensorRT-LLM 1.x runner returns nothing elsewhere), so the others return None."""
    from tqdm import tqdm

    def batch_of(start: int) -> list[dict]:
        return rows[start: start + args.batch_size]

    def one(batch: list[dict]) -> tuple[list[str], int, float]:
        started = time.perf_counter()
        ids = [encode(tokenizer, summarize_prompt(r["article"]), args.max_input_length) for r in batch]
        result: GenerationResult = generator.generate(ids, args.output_len, Sampling())
        texts = [tokenizer.decode(out, skip_special_tokens=True) for out in result.output_ids]
        return texts, sum(len(o) for o in result.output_ids), time.perf_counter() - started

    one(batch_of(0))  # warm-up, untimed and unscored
    texts, tokens, latency = [], 0, 0.0
    starts = [i * args.batch_size for i in range(args.max_ite) if i * args.batch_size < len(rows)]
    for start in tqdm(starts, desc=f"summarize {label}", unit="batch", disable=not is_main, mininterval=2.0):
        batch_texts, batch_tokens, batch_latency = one(batch_of(start))
        texts += batch_texts
        tokens += batch_tokens
        latency += batch_latency
    if not is_main:
        return None
    references = [r["highlights"] for r in rows[: len(texts)]]
    return {**score(texts, references), "total_latency_s": latency, "output_tokens": tokens,
            "tokens_per_s": tokens / latency if latency else None, "texts": texts}
