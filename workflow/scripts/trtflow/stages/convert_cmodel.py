"""Stage convert_cmodel: HF checkpoint → c-model shards, with hf_gpt_convert.py's flags (-i, -o, -tp, -t, -p)."""

from __future__ import annotations

import argparse
import time

from ..errors import run_stage
from ..formats.artifact import verify_manifest
from ..formats.cmodel import TORCH_DTYPES, convert


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert a HF GPT-2 checkpoint to c-model shards "
                                     "(TRT-LLM v0.8.0 hf_gpt_convert.py format).")
    parser.add_argument("--in-file", "-i", required=True, help="HF checkpoint folder")
    parser.add_argument("--out-dir", "-o", required=True, help="output root; files go to OUT/{tp}-gpu/")
    parser.add_argument("--tensor-parallelism", "-tp", type=int, default=1)
    parser.add_argument("--storage-type", "-t", choices=list(TORCH_DTYPES), default="float32")
    parser.add_argument("--processes", "-p", type=int, default=4)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    verify_manifest(args.in_file)  # the checkpoint as it was imported, not edited since
    target = convert(args.in_file, args.out_dir, args.tensor_parallelism, args.storage_type, args.processes)
    print(f"wrote {target} in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    run_stage(main)
