"""Each kernel of the `decode: kernels` step alone, at the gpt2-medium shape, as the step meets it: the
kernel launched once per layer over 24 layers' own weights and caches (so, as in a real step, no weight is in L2
from the previous launch), the 24 launches captured in one CUDA graph, time per launch from its replays.

- gemv: for each linear of a layer (with what the step fuses into it) and the lm_head of a random gpt2-medium-shaped
  model, the configuration an engine build chooses (kernels.tune) with and without programmatic dependent launch
  (PDL) and, from 2 rows, for the linears after a layer norm, the other ways of doing it (kernels.NormWay: from
  kernels.row_stats normalized in the loop, a pass over the rows in every program or a kernel apart, folded into the
  weights), against Triton's autotuner over the same candidates and cuBLAS (F.linear, unfused); with --sweep BATCH:WEIGHTS
  every configuration of that path (ROW_SWEEP at batch 1, DOT_SWEEP and SPLIT_SWEEP above) for the layer linears.
- attention: the attention kernel as the step runs it, with and without PDL (with --sweep attention per
  BLOCK_T / num_warps / AHEAD, how far its loads run ahead of the arithmetic) against SDPA with the additive mask
  over the whole span (what the step ran before), for several batch sizes and filled lengths.
- argmax: the lm_head with its argmax epilogue against the lm_head writing logits then torch.argmax.

    PYTHONPATH=workflow/scripts python3 benchmarks/kernel_bench.py --out $OUT [--sweep 64:fp16 1:int8 attention]
        [--cases 1:fp16 64:fp16 …]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import itertools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from trtflow.backends.torch import kernels  # noqa: E402
from trtflow.backends.torch.kernels import launch  # noqa: E402
from trtflow.backends.torch.kernels.linear import LN_APART_ROWS, linear, lm_head_argmax  # noqa: E402
from trtflow.backends.torch.kernels.operands import Epilogue, Norm  # noqa: E402
from trtflow.backends.torch.model import ParallelGPT2, decode_mask  # noqa: E402
from trtflow.backends.torch.weight_only import quantize_weights  # noqa: E402
from trtflow.backends.torch.weights import GPT2Weights, LayerNorm, Linear  # noqa: E402
from trtflow.gpt2 import ModelDims  # noqa: E402

# the module (the package's `attention` is its launch function of the same name)
attention_kernels = importlib.import_module("trtflow.backends.torch.kernels.attention")

LAYERS, HIDDEN, HEADS, VOCAB = 24, 1024, 16, 50257
HEAD_DIM = HIDDEN // HEADS
CAPACITY = 228  # the static cache of an engine of max_input_len 128 + max_output_len 100
DIMS = ModelDims(vocab_size=VOCAB, hidden=HIDDEN, heads=HEADS, layers=LAYERS, positions=1024, inner=4 * HIDDEN,
                 eps=1e-5, activation="gelu_new", tied=True)
ROW_SWEEP = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=3)
             for n, k, w in itertools.product((1, 2, 4, 8, 16), (256, 512, 1024), (2, 4, 8))]
DOT_SWEEP = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=4 if n * k <= 4096 else 8, num_stages=s)
             for (n, k), s in itertools.product(((16, 128), (16, 256), (16, 512), (32, 64), (32, 128), (32, 256),
                                                 (64, 64), (64, 128), (128, 64)), (3, 4))]
# with K split (kernels/split.py): 2-16 chunks, wide blocks
SPLIT_SWEEP = [triton.Config({"BLOCK_N": n, "BLOCK_K": k, "SPLIT_K": split}, num_warps=4 if n * k <= 4096 else 8,
                             num_stages=3)
               for (n, k), split in itertools.product(((32, 128), (64, 64), (64, 128), (128, 64)), (2, 4, 8, 16))]
COLUMNS = ["part", "batch", "n", "k", "weights", "variant", "config", "us_per_launch", "gb_per_s"]


def label(config: triton.Config) -> str:
    kw = config.kwargs
    split = f" split {kw['SPLIT_K']}" if kw.get("SPLIT_K", 1) > 1 else ""
    return f"{kw['BLOCK_N']}x{kw['BLOCK_K']} w{config.num_warps} s{config.num_stages}{split}"


def random_model(weights: str) -> ParallelGPT2:
    """A gpt2-medium-shaped model of random weights (int8: its linears weight-only quantized, as an engine)."""
    def randn(*shape, scale=1.0):
        return torch.randn(*shape, device="cuda", dtype=torch.float16) * scale

    w = {"wte": randn(VOCAB, HIDDEN, scale=1 / 32), "wpe": randn(DIMS.positions, HIDDEN, scale=1 / 32),
         "ln_f.weight": randn(HIDDEN).abs(), "ln_f.bias": randn(HIDDEN)}
    for layer in range(LAYERS):
        p = f"layers.{layer}."
        for name, (n, k) in {"qkv": (3 * HIDDEN, HIDDEN), "dense": (HIDDEN, HIDDEN), "fc": (DIMS.inner, HIDDEN),
                             "proj": (HIDDEN, DIMS.inner)}.items():
            w[p + name + ".weight"], w[p + name + ".bias"] = randn(n, k, scale=k**-0.5), randn(n)
        for norm in ("ln_1", "ln_2"):
            w[p + norm + ".weight"], w[p + norm + ".bias"] = randn(HIDDEN).abs(), randn(HIDDEN)
    return ParallelGPT2(DIMS, HEADS, 1, GPT2Weights.from_engine(quantize_weights(w) if weights == "int8" else w,
                                                               DIMS.eps))


def layer_norm_ways(batch: int, weights: str) -> list[str]:
    """The ways (kernels.NormWay's values) a layer norm before a matmul can take at `batch` rows: "pass" becomes
    "apart" from LN_APART_ROWS, "folded" needs fp16 weights."""
    if batch == 1:
        return ["pass"]
    apart = kernels.row_tile(batch) >= LN_APART_ROWS
    return ["statistics", "apart" if apart else "pass"] + ["folded"] * (weights == "fp16")


def gemv_rows(batch: int, weights: str, sweep: bool) -> list[dict]:
    """The layer linears and the lm_head at `batch`: as kernels.tune times them alone (an engine build then ranks
    them again in the whole step), against what Triton's autotuner picks (what engines recorded before), without
    PDL, with the layer norm fused in where it runs apart, and cuBLAS; with `sweep` every configuration of the
    batch's path for the layer linears."""
    rows = []
    model = random_model(weights)
    step = kernels.KernelStep(model, kernels.TuningTable(), batch, CAPACITY)
    table = step.tuning
    tuned = kernels.tune(step, batch)
    step_way = kernels.norm_way(batch, model.weights.quantized).value
    other_ways = {way: step.linears(batch, kernels.NormWay(way)) for way in layer_norm_ways(batch, weights)
                  if way != step_way}
    for part, (weight, x, launches) in step.linears(batch).items():
        n, k = weight.shape
        key = kernels.shape_of(batch, weight, x)
        bytes_read = weight.numel() * weight.element_size()

        def row(variant, us, config="", n=n, k=k, part=part, bytes_read=bytes_read):
            rows.append({"part": part, "batch": batch, "n": n, "k": k, "weights": weights, "variant": variant,
                         "config": config, "us_per_launch": round(us, 3),
                         "gb_per_s": round(bytes_read / us / 1000, 1)})
            print(f"{part:8s} b{batch} {weights:5s} {variant:34s} {config:16s} {us:7.2f} us  "
                  f"{bytes_read / us / 1000:7.1f} GB/s", flush=True)

        us, choice = tuned[part]
        row("tuned (as an engine build tunes)", us, label(choice))
        launch.PDL = False
        row("tuned, without PDL", kernels.time_in_graph(launches), label(choice))
        launch.PDL = None
        for way, linears in other_ways.items() if part in ("qkv", "fc", "lm_head") else ():
            if not (part == "lm_head" and way == "folded"):  # the tied lm_head is never folded
                row(f"tuned, layer norm {way}", kernels.time_in_graph(linears[part][2]), label(choice))
        del table.chosen[key]
        fresh = kernels.TuningTable()
        step.tuning = fresh
        us = kernels.time_in_graph(launches)
        row("Triton's autotuner, same candidates", us,
            ",".join(label(kernels.tuning._config(entry)) for entry in fresh.to_json()))
        step.tuning = table
        if part != "lm_head" and weights == "fp16":
            linears = [lambda lin=getattr(layer, part), x=x: F.linear(x, lin.weight, lin.bias)
                       for layer in model.weights.layers]
            row("cuBLAS F.linear (unfused)", kernels.time_in_graph(linears))
        for config in (ROW_SWEEP if batch == 1 else DOT_SWEEP + SPLIT_SWEEP) if sweep and part != "lm_head" else ():
            table.chosen[key] = config
            try:
                us = kernels.time_in_graph(launches, repeats=5)
            except Exception as error:  # out of resources: a configuration this GPU cannot run
                print(f"  {label(config)}: {type(error).__name__}", flush=True)
                continue
            row("swept", us, label(config))
        table.chosen[key] = choice
    return rows


def attention_rows(sweep: bool) -> list[dict]:
    rows = []
    for batch, length, capacity in ((1, 60, 160), (1, 160, 160), (8, 160, 160), (64, 128, 228), (64, 228, 228),
                                    (1, 1024, 1024)):
        rows += attention_case(batch, length, capacity, sweep)
    return rows


def attention_case(batch: int, length: int, capacity: int, sweep: bool) -> list[dict]:
    rows = []
    caches = [torch.randn(batch, 2, HEADS, capacity, HEAD_DIM, device="cuda", dtype=torch.float16)
              for _ in range(LAYERS)]
    qkv = torch.randn(batch, 3 * HIDDEN, device="cuda", dtype=torch.float16)
    positions = torch.full((batch,), length - 1, device="cuda")
    mask = decode_mask(positions, capacity, torch.float16)
    q = qkv.view(batch, 3, HEADS, HEAD_DIM)[:, 0, :, None, :]
    out = torch.empty(batch, HIDDEN, device="cuda", dtype=torch.float16)
    bytes_read = 2 * batch * HEADS * length * HEAD_DIM * 2

    def row(variant, us):
        rows.append({"part": "attention", "batch": batch, "n": length, "k": HEAD_DIM, "weights": "fp16",
                     "variant": variant, "us_per_launch": round(us, 3), "gb_per_s": round(bytes_read / us / 1000, 1)})
        print(f"attention b{batch} len {length:4d} {variant:34s} {us:7.2f} us", flush=True)

    def kernel(cache, block_t, warps, ahead):
        attention_kernels._attention_kernel[(batch, HEADS)](qkv, cache, positions, out, HEADS, HEAD_DIM**-0.5,
                                                  CAPACITY=capacity, HEAD_DIM=HEAD_DIM, BLOCK_T=block_t,
                                                  WHOLE_CACHE=False, PDL=False, num_warps=warps, AHEAD=ahead)

    row("SDPA + mask over the span", kernels.time_in_graph(
        [lambda c=c: F.scaled_dot_product_attention(q, c[:, 0], c[:, 1], attn_mask=mask) for c in caches]))
    row("kernels.attention (as the step runs it)", kernels.time_in_graph(
        [lambda c=c: kernels.attention(qkv, c, positions) for c in caches]))
    launch.PDL = False
    row("kernels.attention, without PDL", kernels.time_in_graph(
        [lambda c=c: kernels.attention(qkv, c, positions) for c in caches]))
    launch.PDL = None
    for block_t, warps, ahead in itertools.product((32, 64, 128, 256), (2, 4, 8), (0, 1, 2)) if sweep else ():
        row(f"kernel BLOCK_T {block_t} w{warps}" + (f" ahead {ahead}" if ahead else ""),
            kernels.time_in_graph([lambda c=c, bt=block_t, w=warps, a=ahead: kernel(c, bt, w, a) for c in caches]))
    reference = F.scaled_dot_product_attention(q, caches[0][:, 0], caches[0][:, 1], attn_mask=mask)
    error = (kernels.attention(qkv, caches[0], positions) - reference.reshape(batch, -1)).abs().max().item()
    print(f"attention b{batch} len {length}: max |kernel - SDPA| {error:.2e}", flush=True)
    assert error < 1e-2
    return rows


def argmax_rows() -> list[dict]:
    rows = []
    h = torch.randn(1, HIDDEN, device="cuda", dtype=torch.float16)
    ln = Norm(LayerNorm.of(torch.randn(HIDDEN, device="cuda", dtype=torch.float16).abs(),
                           torch.randn(HIDDEN, device="cuda", dtype=torch.float16), 1e-5))
    heads = [torch.randn(VOCAB, HIDDEN, device="cuda", dtype=torch.float16) / 32 for _ in range(4)]
    best = kernels.argmax_slots(1, torch.device("cuda"))
    table = kernels.TuningTable()

    def logits_of(w):
        return linear(h, Linear(w), ln, Epilogue(out_dtype=torch.float32), tuning=table)

    for variant, launches in (
            ("lm_head logits, then torch.argmax", [lambda w=w: logits_of(w).argmax(-1) for w in heads]),
            ("lm_head with its argmax epilogue", [lambda w=w: (best.fill_(kernels.NO_ARGMAX),
                                                               lm_head_argmax(h, w, ln, best, tuning=table))
                                                  for w in heads])):
        us = kernels.time_in_graph(launches)
        rows.append({"part": "lm_head+argmax", "batch": 1, "n": VOCAB, "k": HIDDEN, "weights": "fp16",
                     "variant": variant, "us_per_launch": round(us, 3), "gb_per_s": ""})
        print(f"lm_head+argmax {variant:40s} {us:7.2f} us", flush=True)
    logits = logits_of(heads[0])
    best.fill_(kernels.NO_ARGMAX)
    lm_head_argmax(h, heads[0], ln, best, tuning=table)
    assert int(kernels.argmax_of(best)) == int(logits.argmax()), "argmax epilogue differs from torch.argmax"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sweep", nargs="*", default=[], metavar="BATCH:WEIGHTS|attention",
                        help="also every block configuration of these cases, e.g. 64:fp16 1:int8 (minutes each)")
    parser.add_argument("--cases", nargs="*", default=["64:fp16", "1:int8", "8:fp16", "1:fp16", "64:int8"],
                        metavar="BATCH:WEIGHTS", help="the linears at these batch sizes and weights")
    parser.add_argument("--no-attention", dest="attention", action="store_false",
                        help="leave out the attention and argmax parts")
    args = parser.parse_args()
    sweeps = set(args.sweep)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name().replace(" ", "_")
    with open(out / f"kernel_bench_{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        parts = [lambda: attention_rows("attention" in sweeps), argmax_rows] if args.attention else []
        parts += [lambda case=case: gemv_rows(int(case.split(":")[0]), case.split(":")[1], sweep=case in sweeps)
                  for case in args.cases]
        for part in parts:
            writer.writerows(part())
            f.flush()


if __name__ == "__main__":
    main()
