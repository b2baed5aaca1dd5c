"""run.py as a file: prompts in, generated texts and token ids out (results/{model}/tp{tp}/generate.json).

Run on every rank (`python -m trtflow.infra.launch -n TP trtflow.stages.generate …`); rank 0 writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os

from ..engines import open_engine
from ..errors import run_stage
from ..evaluation.tokenizer import encode, load_tokenizer
from ..formats.artifact import write_json
from ..generation import Sampling
from ..infra.dist import init_distributed, shutdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generate text with an engine (run.py equivalent).")
    parser.add_argument("--engine-dir", required=True)
    parser.add_argument("--tokenizer-dir", required=True)
    prompts = parser.add_mutually_exclusive_group()
    prompts.add_argument("--input-text", nargs="+", default=["Born in north-east France, Soyer trained as a"])
    prompts.add_argument("--input-text-json", type=json.loads, help="the prompts as a JSON list of strings")
    parser.add_argument("--max-output-len", type=int, required=True)
    parser.add_argument("--max-input-length", type=int, default=923)
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--top-p", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--num-beams", type=int, default=1)
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--build-key", default=None)
    parser.add_argument("--out", required=True)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.input_text_json is not None:
        args.input_text = args.input_text_json
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    dist = init_distributed()
    engine = open_engine(args.engine_dir, dist, args.build_key)
    tokenizer = load_tokenizer(args.tokenizer_dir)
    batch = [encode(tokenizer, text, args.max_input_length) for text in args.input_text]
    sampling = Sampling(args.top_k, args.top_p, args.temperature, args.num_beams, args.random_seed)
    result = engine.generate(batch, args.max_output_len, sampling)
    if dist.is_main:
        generated = sum(len(ids) for ids in result.output_ids)
        write_json(args.out, checksum=True, obj={
            "build_key": args.build_key,
            "engine_dir": args.engine_dir,
            "world_size": dist.world_size,
            "device": str(dist.device),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "sampling": vars(sampling),
            "max_output_len": args.max_output_len,
            "outputs": [
                {"input_text": text, "input_ids": ids, "output_ids": out,
                 "output_text": tokenizer.decode(out, skip_special_tokens=True)}
                for text, ids, out in zip(args.input_text, batch, result.output_ids, strict=True)
            ],
            "timing": {"total_s": result.total_s, "context_s": result.context_s, "output_tokens": generated,
                       "tokens_per_s": generated / result.total_s if result.total_s else None},
            **result.info,
        })
        for text, out in zip(args.input_text, result.output_ids, strict=True):
            print(f"Input: {text!r}\nOutput: {tokenizer.decode(out, skip_special_tokens=True)!r}")
    shutdown()


if __name__ == "__main__":
    run_stage(main)
