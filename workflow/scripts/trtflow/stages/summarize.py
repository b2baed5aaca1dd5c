"""summarize.py as a file: ROUGE of the engine, beside Hugging Face's on the same examples (rouge.json).

The engine side runs here (evaluation.summaries: summarize.py's data, prompt, warm-up and timing); the HF
side is read from the model's HF summary (stages.hf_summarize), made once per model and summarize settings
and shared by every tp and engine, since it does not depend on the engine. Every rank runs the engine;
rank 0 writes the JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engines import open_engine
from ..errors import KnownError, run_stage
from ..evaluation.datasets import read_dataset
from ..evaluation.summaries import SummarySettings, run_side
from ..evaluation.tokenizer import load_tokenizer
from ..formats.artifact import read_json, verify_checksum, verify_manifest, write_json
from ..formats.provenance import software_versions
from ..infra.dist import barrier, init_distributed, shutdown


def add_summary_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings both sides share (summarize.py's flags)."""
    parser.add_argument("--hf-model-dir", required=True)
    parser.add_argument("--dataset-file", required=True)
    parser.add_argument("--dataset-name", default="demo")
    parser.add_argument("--max-ite", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--output-len", type=int, default=100)
    parser.add_argument("--max-input-length", type=int, default=923)


def settings_of(args: argparse.Namespace) -> SummarySettings:
    return SummarySettings(args.max_ite, args.batch_size, args.output_len, args.max_input_length)


def read_hf_side(path: str, settings: SummarySettings, dataset_ids: list) -> dict:
    summary = read_json(verify_checksum(path))
    if summary["settings"] != vars(settings) or summary["dataset_ids"] != dataset_ids:
        raise KnownError(f"{path} was made for other summarize settings or examples than this run's: delete it "
                         "and rerun; the workflow makes it again")
    return summary["hf"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ROUGE of an engine vs Hugging Face (summarize.py equivalent).")
    parser.add_argument("--engine-dir", required=True)
    add_summary_arguments(parser)
    parser.add_argument("--hf-summary", default=None, help="the HF side (stages.hf_summarize); none: engine only")
    parser.add_argument("--build-key", default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    rows = read_dataset(verify_checksum(args.dataset_file))
    verify_manifest(args.hf_model_dir)  # every rank, before any waits for another
    settings = settings_of(args)
    dist = init_distributed()
    engine = open_engine(args.engine_dir, dist, args.build_key)
    tokenizer = load_tokenizer(args.hf_model_dir)
    engine_side = run_side(engine, tokenizer, rows, settings, "engine", dist.is_main)
    if dist.is_main:
        used = len(engine_side["texts"])
        ids = [r.get("id") for r in rows[:used]]
        hf_side = read_hf_side(args.hf_summary, settings, ids) if args.hf_summary else None
        write_json(args.out, checksum=True, obj={
            "build_key": args.build_key,
            "engine_dir": args.engine_dir,
            "world_size": dist.world_size,
            "device": str(dist.device),
            "dataset": {"name": args.dataset_name, "file": str(Path(args.dataset_file)), "split": "test",
                        "indices": list(range(used)), "ids": ids},
            "settings": {**vars(settings), "compare_hf": hf_side is not None},
            "engine": engine_side,
            "hf": hf_side,
            "hf_summary": args.hf_summary,
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
