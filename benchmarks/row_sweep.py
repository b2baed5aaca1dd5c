"""The one-row kernels' block sizes (kernels/row.py's BLOCKS) timed in the decode step, against step.py's five kernels
a layer at one row, in one process: a gpt2-medium-shape engine (random weights, `decode: kernels`, fp16 or
weight-only int8), prompts of 60 tokens, 100 generated; each configuration captured anew and timed as the median
of --runs generations. Coordinate descent: each kernel's candidates in turn, the others at their best so far.
Also the greedy tokens of each configuration against the five-kernel step's. `--ab ROUNDS` instead alternates the
five-kernel step and the row kernels at row.BLOCKS (and at each `--mlp` strip), ROUNDS times, 20 and 100 tokens
generated, so that a drift of the machine falls on all of them.

    PYTHONPATH=workflow/scripts python3 benchmarks/row_sweep.py --out $OUT [--int8] [--rounds 2]
    PYTHONPATH=workflow/scripts python3 benchmarks/row_sweep.py --out $OUT [--int8] --ab 4 [--mlp 16,8 32,16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from convert import CHECKPOINT_TOKEN_IDS, c_model, write_rows  # noqa: E402
from gpu_speed import FLAGS  # noqa: E402
from trtflow.backends.torch.build import build  # noqa: E402
from trtflow.backends.torch.generator import TorchEngineGenerator  # noqa: E402
from trtflow.backends.torch.kernels import row  # noqa: E402
from trtflow.flags import BuildFlags  # noqa: E402
from trtflow.infra.dist import init_distributed  # noqa: E402

CANDIDATES = {"qkv": [(8, 4), (16, 8), (32, 8), (16, 4)], "attention": [(64, 4), (128, 4), (256, 8)],
              "mlp": [(8, 4), (16, 8), (32, 16), (16, 4)]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--ab", type=int, default=0, metavar="ROUNDS")
    parser.add_argument("--mlp", nargs="+", default=[], metavar="BLOCK_F,WARPS")
    args = parser.parse_args()
    work = Path("/tmp/trtflow-gpu")
    source = c_model(work)
    flags = {**FLAGS, "decode": "kernels", "max_batch_size": 1, "use_weight_only": args.int8}
    engine_dir = build(source, work / "engines" / f"row-sweep{'-int8' if args.int8 else ''}",
                       BuildFlags.from_config(flags, "float16"), "0" * 10, CHECKPOINT_TOKEN_IDS)
    engine = TorchEngineGenerator(engine_dir, init_distributed())
    prompt = [[int(t) for t in torch.randint(50257, (60,), generator=torch.Generator().manual_seed(0))]]

    def timed(steps: int = 100) -> tuple[float, list[int]]:
        engine.static._graphs.clear()  # capture the step anew with the blocks set now
        for _ in range(2):
            tokens = engine.generate(prompt, steps, ignore_eos=True).output_ids[0]
        times = []
        for _ in range(args.runs):
            torch.cuda.synchronize()
            started = time.perf_counter()
            engine.generate(prompt, steps, ignore_eos=True)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times), list(tokens)

    suffix = "_int8" if args.int8 else ""
    if args.ab:
        ab(timed, args.ab, [tuple(int(v) for v in m.split(",")) for m in args.mlp], Path(args.out) / f"row_ab{suffix}.csv")
        return
    rows = []
    row.ENABLED = False
    five_ms, five_tokens = timed()
    rows.append({"path": "five kernels a layer (step.py)", "ms": f"{five_ms:.3f}", "tokens equal": True})
    print(rows[-1], flush=True)
    row.ENABLED = True
    best = dict(row.BLOCKS)
    seen = {}
    for _ in range(args.rounds):
        for kernel, options in CANDIDATES.items():
            for option in options:
                blocks = {**best, kernel: option}
                key = tuple(sorted(blocks.items()))
                if key not in seen:
                    row.BLOCKS.update(blocks)
                    ms, tokens = timed()
                    seen[key] = ms
                    rows.append({"path": "row kernels " + label(blocks), "ms": f"{ms:.3f}",
                                 "tokens equal": tokens == five_tokens})
                    print(rows[-1], flush=True)
            best[kernel] = min(options, key=lambda o: seen[tuple(sorted({**best, kernel: o}.items()))])
    rows.append({"path": "best " + label(best), "ms": f"{seen[tuple(sorted(best.items()))]:.3f}", "tokens equal": ""})
    write_rows(Path(args.out) / f"row_sweep{suffix}.csv", rows)
    print(rows[-1])


def label(blocks: dict[str, tuple[int, int]]) -> str:
    """Block sizes as the CSVs name them: qkv=8w4 attention=256w8 mlp=16w8."""
    return " ".join(f"{k}={v[0]}w{v[1]}" for k, v in blocks.items())


def ab(timed, rounds: int, mlp: list[tuple[int, int]], path: Path) -> None:
    """The five-kernel step and the row kernels (row.BLOCKS, then each mlp strip) alternating, `rounds` times."""
    paths = [("five kernels a layer (step.py)", False, None)] + [
        ("row kernels " + label({**row.BLOCKS, "mlp": m}), True, m)
        for m in [row.BLOCKS["mlp"], *mlp]]
    default, rows = row.BLOCKS["mlp"], []
    for round_ in range(1, rounds + 1):
        for name, enabled, strip in paths:
            row.ENABLED, row.BLOCKS["mlp"] = enabled, strip or default
            for steps in (20, 100):
                ms, tokens = timed(steps)
                rows.append({"round": round_, "path": name, "output_len": steps, "ms": f"{ms:.3f}"})
                print(rows[-1], flush=True)
    write_rows(path, rows)


if __name__ == "__main__":
    main()
