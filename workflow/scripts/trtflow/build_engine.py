"""Engine stage: c-model (or TRT-LLM checkpoint) → engine folder, for the configured backend."""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build an engine from converted shards.")
    parser.add_argument("--backend", choices=["torch", "trtllm"], default="torch")
    parser.add_argument("--source-dir", required=True, help="c-model {tp}-gpu folder (or TRT-LLM 1.2 checkpoint)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--flags", required=True, help="normalised build flags as JSON")
    parser.add_argument("--build-key", required=True)
    parser.add_argument("--trtllm", default="{}", help="trtllm settings as JSON (flow, examples_dir)")
    args = parser.parse_args(argv)
    flags = json.loads(args.flags)
    if args.backend == "torch":
        from .engine.torch_engine import build

        build(args.source_dir, args.out_dir, flags, args.build_key)
    else:
        from .trtllm.build import build

        build(args.source_dir, args.out_dir, flags, args.build_key, json.loads(args.trtllm))
    print(f"built {args.out_dir}")


if __name__ == "__main__":
    main()
