"""Speed of the torch backend on a GPU, side by side with Hugging Face, in one process (issue E).

Builds a random gpt2-medium-shape checkpoint (24 layers, 1024 wide, 16 heads, vocab 50257), converts it
to a float16 c-model at tp 1, builds torch engines in three variants (eager; CUDA graph; CUDA graph +
torch.compile), and runs trtflow's benchmark measurement (bench.measure, gptSessionBenchmark semantics)
and the same measurement of Hugging Face `generate` (fp16) for three cases. Also checks greedy tokens
of the engines against HF fp16 for 20 steps, one prompt at a time and (engines of at least WIDE_ROWS rows)
the same prompts repeated in one batch of WIDE_ROWS. Writes one CSV (A5 columns + `system`) and a JSON summary.

    PYTHONPATH=workflow/scripts python3 benchmarks/gpu_speed.py --out $OUT
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from convert import CHECKPOINT_TOKEN_IDS, SHAPE, make_checkpoint  # noqa: E402
from trtflow.backends.torch.build import build  # noqa: E402
from trtflow.backends.torch.generator import TorchEngineGenerator  # noqa: E402
from trtflow.flags import BuildFlags  # noqa: E402
from trtflow.formats import cmodel  # noqa: E402
from trtflow.generation import Sampling  # noqa: E402
from trtflow.hf_reference import HFGenerator  # noqa: E402
from trtflow.infra.dist import init_distributed  # noqa: E402
from trtflow.stages import benchmark as bench  # noqa: E402

CASES = [(1, 60, 20), (1, 60, 100), (8, 60, 100), (64, 128, 100)]
WIDE_ROWS = 40  # the greedy check's prompts also decoded in a batch of this many rows (a row tile of 64)
FLAGS = {"backend": "torch", "use_gpt_attention_plugin": "float16", "use_gemm_plugin": None,
         "remove_input_padding": True, "enable_context_fmha": False, "enable_context_fmha_fp32_acc": False,
         "paged_kv_cache": False, "use_inflight_batching": False, "tokens_per_block": 128, "max_batch_size": 64,
         "max_input_len": 128, "max_output_len": 100, "decode": "eager",
         "use_weight_only": False, "weight_only_precision": "int8"}
VARIANTS = {"trtflow-eager": {}, "trtflow-cudagraph": {"decode": "cuda-graph"},
            "trtflow-cudagraph-compile": {"decode": "compile"},
            "trtflow-cudagraph-autotune": {"decode": "compile-max-autotune"},
            "trtflow-cudagraph-gemv": {"decode": "compile-gemv"},
            # trtflow's Triton kernels (backends/torch/kernels/)
            "trtflow-cudagraph-triton": {"decode": "kernels"},
            "trtflow-cudagraph-triton-int8wo": {"decode": "kernels", "use_weight_only": True},
            # weight-only int8: the same paths with int8 linears dequantized inside the matmul
            "trtflow-cudagraph-int8wo": {"decode": "cuda-graph", "use_weight_only": True},
            "trtflow-cudagraph-gemv-int8wo": {"decode": "compile-gemv", "use_weight_only": True},
            "trtflow-cudagraph-autotune-int8wo": {"decode": "compile-max-autotune",
                                                  "use_weight_only": True}}


def weights_mib(engine) -> float:
    """What a torch engine holds for its weights, with the kernels' folded layer norms (KernelStep.nbytes), MiB."""
    step = engine.static.kernels if engine.static is not None else None
    return (engine.model.weights.nbytes() + (step.nbytes() if step is not None else 0)) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/trtflow-gpu")
    parser.add_argument("--num-runs", type=int, default=10)
    parser.add_argument("--hf-num-runs", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--cases", nargs="+", default=None, metavar="BATCH,IN,OUT",
                        help="the cases to measure (default: " + " ".join(",".join(map(str, c)) for c in CASES) + ")")
    parser.add_argument("--max-batch-size", type=int, default=FLAGS["max_batch_size"],
                        help="the engines' max_batch_size (compiled engines compile batch 1 and it at build)")
    parser.add_argument("--smoke", action="store_true", help="a 2-layer model and small cases, to try it on CPU")
    args = parser.parse_args()
    cases, shape = CASES, SHAPE
    if args.cases:
        cases = [tuple(int(v) for v in case.split(",")) for case in args.cases]
    if args.smoke:
        cases, shape = [(1, 8, 4), (4, 16, 4)], {**SHAPE, "n_layer": 2, "n_embd": 64, "n_head": 4}
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    make_checkpoint(work / "hf", shape)
    source = cmodel.convert(work / "hf", work / "c-model", 1, "float16", processes=8, progress=False)
    print(f"checkpoint + c-model in {time.perf_counter() - started:.1f} s", flush=True)
    dist = init_distributed()
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"

    csv_path = out / "gpu_speed.csv"
    handle = csv_path.open("w", newline="")
    writer = csv.DictWriter(handle, fieldnames=bench.COLUMNS, extrasaction="ignore")
    writer.writeheader()

    def record(system: str, generator, batch: int, input_len: int, output_len: int, num_runs: int, extra: dict):
        row = {"system": system, "model": "gpt2-medium-shape (random)", "tp": 1, "device": device_name,
               "dtype": "float16", "batch_size": batch, "input_len": input_len, "output_len": output_len, **extra,
               **bench.measure(generator, batch, input_len, output_len, 2, num_runs, 0.0, 50257)}
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
        handle.flush()
        print(f"{system:28s} bs {batch:3d} in {input_len:4d} out {output_len:4d}: "
              f"{row.get('latency_ms', float('nan')):9.2f} ms  {row.get('tokens_per_s', float('nan')):10.1f} tok/s  "
              f"ttft {row.get('ttft_ms', float('nan')):7.2f} ms  tpot {row.get('tpot_ms', float('nan')):6.3f} ms",
              flush=True)
        return row

    prompts = [torch.randint(50257, (n,), generator=torch.Generator().manual_seed(i)).tolist()
               for i, n in enumerate((60, 17, 128, 33))]
    # transformers' default attention (SDPA), as every earlier HF figure of this script was measured
    hf = HFGenerator(work / "hf", dist.device, CHECKPOINT_TOKEN_IDS, "float16" if dist.device.type == "cuda" else "float32",
                     attention="sdpa")
    hf_tokens = [hf.generate([p], 20, ignore_eos=True).output_ids[0] for p in prompts]
    summary = {"device": device_name, "torch": torch.__version__, "agreement_vs_hf_fp16_20_steps": {}, "rows": []}
    for name in args.variants:
        flags = BuildFlags.from_config({**FLAGS, "max_batch_size": args.max_batch_size, **VARIANTS[name]}, "float16")
        # compiled (tuned) for the batch sizes it runs, as the engine rule builds for its jobs' batches
        engine_dir = build(source, work / "engines" / name, flags, "0" * 10, CHECKPOINT_TOKEN_IDS,
                           sorted(b for b in {1, WIDE_ROWS, *(case[0] for case in cases)}
                                  if b <= args.max_batch_size))
        engine = TorchEngineGenerator(engine_dir, dist)
        # what the engine keeps on the device for its weights (the KV cache is sized by max_batch_size apart)
        weights_mb = weights_mib(engine)
        summary.setdefault("weights_mb", {})[name] = weights_mb
        tokens = [engine.generate([p], 20, Sampling(), ignore_eos=True).output_ids[0] for p in prompts]
        same = sum(a == b for t, h in zip(tokens, hf_tokens, strict=True) for a, b in zip(t, h, strict=True))
        first_diff = [next((i for i, (a, b) in enumerate(zip(t, h, strict=True)) if a != b), 20)
                      for t, h in zip(tokens, hf_tokens, strict=True)]
        summary["agreement_vs_hf_fp16_20_steps"][name] = {"tokens_equal": same, "tokens": 20 * len(prompts),
                                                          "first_difference_per_prompt": first_diff}
        print(f"{name}: {same}/{20 * len(prompts)} greedy tokens equal to HF fp16; first differences {first_diff}; "
              f"weights {weights_mb:.1f} MB", flush=True)
        if args.max_batch_size >= WIDE_ROWS:  # the check prompts again, decoded side by side as one wide batch
            rows = engine.generate([prompts[i % len(prompts)] for i in range(WIDE_ROWS)], 20, Sampling(),
                                   ignore_eos=True).output_ids
            same = sum(a == b for i, t in enumerate(rows) for a, b in zip(t, hf_tokens[i % len(prompts)], strict=True))
            summary.setdefault(f"agreement_vs_hf_fp16_20_steps_{WIDE_ROWS}_rows", {})[name] = same
            print(f"{name}: {same}/{20 * WIDE_ROWS} greedy tokens equal to HF fp16 in a batch of {WIDE_ROWS}", flush=True)
        for case in cases:
            summary["rows"].append(record(name, engine, *case, args.num_runs,
                                          {"backend": "torch", "cuda_graphs": flags.cuda_graphs}))
        # the same after the runs (the folded layer norms are made when the engine opens)
        after_mb = weights_mib(engine)
        summary.setdefault("weights_mb_after_cases", {})[name] = after_mb
        print(f"{name}: weights {after_mb:.1f} MB after the cases", flush=True)
        del engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for case in cases:
        summary["rows"].append(record("hf-transformers-generate", hf, *case, args.hf_num_runs,
                                      {"backend": "transformers", "cuda_graphs": False}))
    handle.close()
    summary["wall_s"] = time.perf_counter() - started
    (out / "gpu_speed.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {csv_path} in {summary['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
