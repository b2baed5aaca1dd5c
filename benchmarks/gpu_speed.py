"""Speed of the torch backend on a GPU, side by side with Hugging Face, in one process.

Builds a random gpt2-medium-shape checkpoint (24 layers, 1024 wide, 16 heads, vocab 50257), converts it
to a float16 c-model at tp 1, builds torch engines in three variants (eager; CUDA graph; CUDA graph +
torch.compile), and runs trtflow's benchmark measurement (bench.measure, gptSessionBenchmark semantics)
and the same measurement of Hugging Face `generate` (fp16) for three cases. Also checks greedy tokens
of the engines against HF fp16 for 20 steps, one prompt at a time and (engines of at least WIDE_ROWS rows)
the same prompts repeated in one batch of WIDE_ROWS. `--hf static` adds transformers' fast path (static cache,
its decode step compiled by transformers), `--hf static-torchao-int8` that path over torchao's int8 weight-only
linears. On a GPU it also measures the floor: the time to read the weights once
(one matrix-vector product over as many bytes) and, at larger batches, the KV cache at that bandwidth.
Writes one CSV (the benchmark's columns + `system`), a JSON summary and, with `--current`, the rows in
docs/benchmarks/current.csv's columns (benchmarks/current.py merges them).

    PYTHONPATH=workflow/scripts python3 benchmarks/gpu_speed.py --out $OUT --hf dynamic static \
        --current $OUT/current.csv --commit "$(git rev-parse --short HEAD)"
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import current  # noqa: E402
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
HF_SYSTEMS = {"dynamic": "hf-transformers-generate", "static": "hf-transformers-static-compiled",
              # the static compiled path over torchao's weight-only int8 linears: what a user would reach for
              "static-torchao-int8": "hf-transformers-static-compiled-torchao-int8wo"}
FLOOR = "floor (weights and KV cache read once a step)"


def weight_bytes(shape: dict, int8: bool) -> int:
    """What one decode step reads of the weights: every layer's four linears (int8 or fp16) and the fp16 lm_head."""
    width = shape["n_embd"]
    linears = shape["n_layer"] * 12 * width * width
    return linears * (1 if int8 else 2) + shape["vocab_size"] * width * 2


def read_bandwidth(nbytes: int, runs: int = 20) -> float:
    """Bytes per second of one fp16 matrix-vector product over nbytes of matrix (min of `runs`, CUDA events)."""
    matrix = torch.randn(nbytes // 2 // 1024, 1024, dtype=torch.float16, device="cuda")
    vector = torch.randn(1024, dtype=torch.float16, device="cuda")
    times = []
    for _ in range(runs + 2):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.mv(matrix, vector)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return matrix.numel() * 2 / min(times[2:])


def floor_row(shape: dict, int8: bool, bandwidth: float, batch: int, input_len: int, output_len: int) -> dict:
    """Each step reads the weights and the KV cache written so far, at the measured bandwidth; the context is
    counted as one weights read."""
    weights = weight_bytes(shape, int8) / bandwidth
    kv_per_position = 2 * shape["n_layer"] * batch * shape["n_embd"] * 2 / bandwidth
    steps = [weights + kv_per_position * (input_len + i) for i in range(output_len)]
    latency = sum(steps)
    return {"latency_ms": latency * 1000, "ttft_ms": steps[0] * 1000,
            "tpot_ms": (latency - steps[0]) / max(output_len - 1, 1) * 1000,
            "tokens_per_s": batch * output_len / latency}


def tokens_equal(tokens: list[list[int]], reference: list[list[int]]) -> int:
    """How many tokens of each prompt's greedy continuation equal the reference's at the same step."""
    return sum(a == b for t, r in zip(tokens, reference, strict=True) for a, b in zip(t, r, strict=True))


def torchao_int8(model) -> int:
    """HF GPT-2's linears as torchao's weight-only int8 (`quantize_` with Int8WeightOnlyConfig), in place. GPT-2's
    attention and MLP layers are transformers' Conv1D (weight [in, out]), which quantize_ passes over: each becomes
    the nn.Linear it computes first. Returns how many linears were quantized."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(*child.weight.shape, device=child.weight.device, dtype=child.weight.dtype)
                linear.weight.data.copy_(child.weight.data.t())
                linear.bias.data.copy_(child.bias.data)
                setattr(parent, name, linear)
    quantize_(model, Int8WeightOnlyConfig())
    return sum(isinstance(m, torch.nn.Linear) and type(m.weight) is not torch.nn.Parameter for m in model.modules())


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
    parser.add_argument("--hf", nargs="+", default=["dynamic"], choices=list(HF_SYSTEMS),
                        help="transformers' generate with its dynamic cache, and/or static (compiled), and/or static "
                             "over torchao's weight-only int8 (needs torchao; measured after the others: it quantizes)")
    parser.add_argument("--current", type=Path, help="also write the rows in current.csv's columns here")
    parser.add_argument("--commit", default="", help="the commit measured, for --current's rows")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                        help="trtflow's engines to build and measure (none: the --hf systems alone)")
    parser.add_argument("--cases", nargs="+", default=None, metavar="BATCH,IN,OUT",
                        help="the cases to measure (default: " + " ".join(",".join(map(str, c)) for c in CASES) + ")")
    parser.add_argument("--max-batch-size", type=int, default=FLAGS["max_batch_size"],
                        help="the engines' max_batch_size (compiled engines compile batch 1 and it at build)")
    parser.add_argument("--smoke", action="store_true", help="a 2-layer model and small cases, to try it on CPU")
    args = parser.parse_args()
    if "static-torchao-int8" in args.hf and importlib.util.find_spec("torchao") is None:
        parser.error("--hf static-torchao-int8 needs torchao: pip install torchao (docs/benchmarks/README.md says which)")
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

    current_rows = []
    model = "2-layer smoke model" if args.smoke else "gpt2-medium shape (random weights)"

    def keep_current(row: dict, weights: str) -> None:
        current_rows.append({**row, "model": model, "weights": weights, "date": datetime.date.today().isoformat(),
                             "commit": args.commit, "measured_by": "benchmarks/gpu_speed.py"})

    def record(system: str, generator, batch: int, input_len: int, output_len: int, num_runs: int, extra: dict,
               weights: str = "float16"):
        row = {"system": system, "model": "gpt2-medium-shape (random)", "tp": 1, "device": device_name,
               "dtype": "float16", "batch_size": batch, "input_len": input_len, "output_len": output_len, **extra,
               **bench.measure(generator, batch, input_len, output_len, 2, num_runs, 0.0, 50257)}
        if row["status"] == "ok":
            keep_current(row, weights)
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
        same = tokens_equal(tokens, hf_tokens)
        first_diff = [next((i for i, (a, b) in enumerate(zip(t, h, strict=True)) if a != b), 20)
                      for t, h in zip(tokens, hf_tokens, strict=True)]
        summary["agreement_vs_hf_fp16_20_steps"][name] = {"tokens_equal": same, "tokens": 20 * len(prompts),
                                                          "first_difference_per_prompt": first_diff}
        print(f"{name}: {same}/{20 * len(prompts)} greedy tokens equal to HF fp16; first differences {first_diff}; "
              f"weights {weights_mb:.1f} MB", flush=True)
        if args.max_batch_size >= WIDE_ROWS:  # the check prompts again, decoded side by side as one wide batch
            rows = engine.generate([prompts[i % len(prompts)] for i in range(WIDE_ROWS)], 20, Sampling(),
                                   ignore_eos=True).output_ids
            same = tokens_equal(rows, [hf_tokens[i % len(prompts)] for i in range(WIDE_ROWS)])
            summary.setdefault(f"agreement_vs_hf_fp16_20_steps_{WIDE_ROWS}_rows", {})[name] = same
            print(f"{name}: {same}/{20 * WIDE_ROWS} greedy tokens equal to HF fp16 in a batch of {WIDE_ROWS}", flush=True)
        for case in cases:
            summary["rows"].append(record(name, engine, *case, args.num_runs,
                                          {"backend": "torch", "cuda_graphs": flags.cuda_graphs},
                                          "int8 weight-only" if flags.use_weight_only else "float16"))
        # the same after the runs (the folded layer norms are made when the engine opens)
        after_mb = weights_mib(engine)
        summary.setdefault("weights_mb_after_cases", {})[name] = after_mb
        print(f"{name}: weights {after_mb:.1f} MB after the cases", flush=True)
        del engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for cache in sorted(args.hf, key=list(HF_SYSTEMS).index):  # torchao's last: it quantizes the model in place
        hf.cache = None if cache == "dynamic" else "static"
        weights = "float16"
        if cache == "static-torchao-int8":
            summary["torchao_int8_linears"] = torchao_int8(hf.model)
            weights = "int8 weight-only"
            tokens = [hf.generate([p], 20, ignore_eos=True).output_ids[0] for p in prompts]
            same = tokens_equal(tokens, hf_tokens)
            summary["agreement_vs_hf_fp16_20_steps"][HF_SYSTEMS[cache]] = {"tokens_equal": same,
                                                                           "tokens": 20 * len(prompts)}
            print(f"{HF_SYSTEMS[cache]}: {summary['torchao_int8_linears']} linears int8; {same}/{20 * len(prompts)} "
                  f"greedy tokens equal to HF fp16", flush=True)
        for case in cases:
            summary["rows"].append(record(HF_SYSTEMS[cache], hf, *case, args.hf_num_runs,
                                          {"backend": "transformers", "cuda_graphs": False}, weights))
    handle.close()
    if "static" in args.hf:  # transformers compiles its step itself: how many graphs dynamo made says it did
        summary["dynamo_unique_graphs"] = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    if torch.cuda.is_available():
        bandwidth = read_bandwidth(weight_bytes(shape, int8=False))
        summary["read_bandwidth_gb_s"] = bandwidth / 1e9
        print(f"floor: {weight_bytes(shape, False) / 1e6:.0f} MB of fp16 weights read at {bandwidth / 1e9:.0f} GB/s",
              flush=True)
        for int8 in (False, True):
            for batch, input_len, output_len in cases:
                keep_current({"system": FLOOR, "device": device_name, "tp": 1, "batch_size": batch,
                              "input_len": input_len, "output_len": output_len,
                              **floor_row(shape, int8, bandwidth, batch, input_len, output_len)},
                             "int8 weight-only" if int8 else "float16")
    if args.current:
        current.write(args.current, current_rows)
    summary["wall_s"] = time.perf_counter() - started
    (out / "gpu_speed.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {csv_path} in {summary['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
