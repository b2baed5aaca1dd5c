"""The Hugging Face side of summarize.py, once per model and summarize settings (results/{model}/hf-summaries/).

It does not depend on any engine, so every tp and every engine of the model compares against the same file
(stages.summarize reads it). transformers' own model and `generate`, greedy, end and pad ids from the tokenizer;
on a GPU in fp16, on a CPU in fp32; GPT-2's eager attention, as in v0.8.0's transformers (flags.HF_ATTENTION).
"""

from __future__ import annotations

import argparse

from ..errors import run_stage
from ..evaluation.datasets import read_dataset
from ..evaluation.summaries import run_side
from ..evaluation.tokenizer import load_tokenizer, token_ids
from ..formats.artifact import verify_checksum, verify_manifest, write_json
from ..formats.provenance import software_versions
from ..hf_reference import HFGenerator
from ..infra.dist import init_distributed
from .summarize import add_summary_arguments, settings_of


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hugging Face's summaries and ROUGE (summarize.py's HF side).")
    add_summary_arguments(parser)
    parser.add_argument("--hf-dtype", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    rows = read_dataset(verify_checksum(args.dataset_file))
    verify_manifest(args.hf_model_dir)
    settings = settings_of(args)
    dist = init_distributed()
    tokenizer = load_tokenizer(args.hf_model_dir)
    hf = HFGenerator(args.hf_model_dir, dist.device, token_ids(args.hf_model_dir, tokenizer), args.hf_dtype)
    side = run_side(hf, tokenizer, rows, settings, "hf", True)
    write_json(args.out, checksum=True, obj={
        "settings": vars(settings), "dataset": args.dataset_name,
        "dataset_ids": [r.get("id") for r in rows[: len(side["texts"])]],
        "device": str(dist.device), "dtype": hf.compute_dtype, "attention": hf.attention, "hf": side,
        "versions": software_versions()})
    print(f"hf: rouge1 {side['rouge1']:.2f} rouge2 {side['rouge2']:.2f} rougeL {side['rougeL']:.2f} "
          f"({side['total_latency_s']:.2f} s, {side['output_tokens']} tokens)")


if __name__ == "__main__":
    run_stage(main)
