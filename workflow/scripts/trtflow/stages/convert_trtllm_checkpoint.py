"""Stage convert_trtllm_checkpoint: HF checkpoint → TensorRT-LLM 1.2 checkpoint (convert_checkpoint.py's flags)."""

from __future__ import annotations

import argparse

from ..errors import run_stage
from ..formats.artifact import verify_manifest
from ..formats.cmodel import TORCH_DTYPES
from ..formats.trtllm_ckpt import convert


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a TensorRT-LLM 1.2 GPT checkpoint from a HF GPT-2.")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--tp_size", type=int, default=1)
    parser.add_argument("--dtype", choices=list(TORCH_DTYPES), default="float16")
    parser.add_argument("--use_weight_only", action="store_true")
    parser.add_argument("--weight_only_precision", choices=["int8", "int4"], default="int8")
    args = parser.parse_args(argv)
    verify_manifest(args.model_dir)  # the checkpoint as it was imported, not edited since
    precision = args.weight_only_precision if args.use_weight_only else None
    print(f"wrote {convert(args.model_dir, args.output_dir, args.tp_size, args.dtype, precision)}")


if __name__ == "__main__":
    run_stage(main)
