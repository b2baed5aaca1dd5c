"""Stage build_engine: converted shards (c-model, or the TensorRT-LLM 1.2 checkpoint) → an engine folder,
with the backend the build flags name."""

from __future__ import annotations

import argparse
import json

from ..engines import build_engine
from ..errors import run_stage
from ..evaluation.tokenizer import token_ids
from ..flags import BuildFlags


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build an engine from converted shards.")
    parser.add_argument("--source-dir", required=True, help="c-model {tp}-gpu folder (or TRT-LLM 1.2 checkpoint)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--tokenizer-dir", required=True, help="the HF folder whose tokenizer gives end and pad ids")
    parser.add_argument("--flags", required=True, help="normalised build flags as JSON (trtflow.flags.BuildFlags)")
    parser.add_argument("--build-key", required=True)
    parser.add_argument("--trtllm", default="{}", help="trtllm settings as JSON (flow, examples_dir)")
    parser.add_argument("--compile-batch-sizes", type=json.loads, default=None,
                        help="JSON list: batch sizes to compile a torch engine's decode step for (torch_compile)")
    args = parser.parse_args(argv)
    flags = BuildFlags.from_json(json.loads(args.flags))
    build_engine(args.source_dir, args.out_dir, flags, args.build_key, json.loads(args.trtllm),
                 token_ids(args.tokenizer_dir), args.compile_batch_sizes)
    print(f"built {args.out_dir}")


if __name__ == "__main__":
    run_stage(main)
