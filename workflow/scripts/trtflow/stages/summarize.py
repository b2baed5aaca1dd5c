"""summarize.py as a file: ROUGE of the engine, and of Hugging Face on the same examples (rouge.json).

Data and prompt as TRT-LLM v0.8.0 summarize.py: `article + ' TL;DR: '`, stripped, " n't" → "n't",
left-truncated to max_input_length tokens; the first max_ite batches of batch_size examples in order;
one untimed warm-up batch (example 0); output_len new tokens, greedy; outputs decoded after the input
with special tokens skipped. Latency per batch covers tokenize + generate + decode, as its profiler does.
Every rank runs the engine; rank 0 also runs the HF reference and writes the JSON.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..engines import open_engine
from ..errors import run_stage
from ..evaluation.datasets import read_dataset
from ..evaluation.prompts import summarize_prompt
from ..evaluation.rouge import score
from ..evaluation.tokenizer import encode, load_tokenizer, special_ids
from ..formats.artifact import verify_checksum, verify_manifest, write_json
from ..formats.provenance import software_versions
from ..generation import GenerationResult, Sampling
from ..hf_reference import HFGenerator
from ..infra.dist import barrier, init_distributed, shutdown


def run_side(generator, tokenizer, rows: list[dict], args, label: str, is_main: bool) -> dict | None:
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ROUGE of an engine vs Hugging Face (summarize.py equivalent).")
    parser.add_argument("--engine-dir", required=True)
    parser.add_argument("--hf-model-dir", required=True)
    parser.add_argument("--dataset-file", required=True)
    parser.add_argument("--dataset-name", default="demo")
    parser.add_argument("--max-ite", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--output-len", type=int, default=100)
    parser.add_argument("--max-input-length", type=int, default=923)
    parser.add_argument("--compare-hf", action="store_true")
    parser.add_argument("--hf-dtype", default="auto")
    parser.add_argument("--build-key", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    rows = read_dataset(verify_checksum(args.dataset_file))
    verify_manifest(args.hf_model_dir)  # every rank, before any waits for another
    dist = init_distributed()
    engine = open_engine(args.engine_dir, dist, args.build_key)
    tokenizer = load_tokenizer(args.hf_model_dir)
    engine_side = run_side(engine, tokenizer, rows, args, "engine", dist.is_main)
    if dist.is_main:
        hf_side = None
        if args.compare_hf:
            end_id, pad_id = special_ids(args.hf_model_dir)
            hf = HFGenerator(args.hf_model_dir, dist.device, {"end_id": end_id, "pad_id": pad_id}, args.hf_dtype)
            hf_side = run_side(hf, tokenizer, rows, args, "hf", True)
        used = len(engine_side["texts"])
        write_json(args.out, checksum=True, obj={
            "build_key": args.build_key,
            "engine_dir": args.engine_dir,
            "world_size": dist.world_size,
            "device": str(dist.device),
            "dataset": {"name": args.dataset_name, "file": str(Path(args.dataset_file)), "split": "test",
                        "indices": list(range(used)), "ids": [r.get("id") for r in rows[:used]]},
            "settings": {k: getattr(args, k) for k in ("max_ite", "batch_size", "output_len", "max_input_length",
                                                      "compare_hf", "hf_dtype")},
            "engine": engine_side,
            "hf": hf_side,
            "references": [r["highlights"] for r in rows[:used]],
            "versions": software_versions(),
        })
        for side, result in (("engine", engine_side), ("hf", hf_side)):
            if result:
                print(f"{side}: rouge1 {result['rouge1']:.2f} rouge2 {result['rouge2']:.2f} rougeL "
                      f"{result['rougeL']:.2f} rougeLsum {result['rougeLsum']:.2f} "
                      f"({result['total_latency_s']:.2f} s, {result['output_tokens']} tokens)")
    barrier()
    shutdown()


if __name__ == "__main__":
    run_stage(main)
