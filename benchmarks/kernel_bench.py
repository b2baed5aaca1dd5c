"""Each kernel of the `torch_compile: triton` decode step alone, at the gpt2-medium shape, as the step meets it: the
kernel launched once per layer over 24 layers' own weights and caches (so, as in a real step, no weight is in L2
from the previous launch), the 24 launches captured in one CUDA graph, time per launch from its replays.

- gemv: for each linear of a layer (with what the step fuses into it) and the lm_head, the configuration the
  autotuner picks (what an engine records), with and without programmatic dependent launch (PDL) and, where the
  layer norm runs apart, fused in, against cuBLAS (F.linear, unfused); with --sweep every configuration in SWEEP.
- attention: the attention kernel as the step runs it, with and without PDL (with --sweep per BLOCK_T / num_warps)
  against SDPA with the additive mask over the whole span (what the step ran before), for several batch sizes and
  filled lengths.
- argmax: the lm_head with its argmax epilogue against the lm_head writing logits then torch.argmax.

    PYTHONPATH=workflow/scripts python3 benchmarks/kernel_bench.py --out $OUT
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from trtflow.backends.torch import kernels  # noqa: E402
from trtflow.backends.torch.model import decode_mask  # noqa: E402
from trtflow.backends.torch.weight_only import quantize_int8  # noqa: E402

LAYERS, HIDDEN, HEADS, VOCAB = 24, 1024, 16, 50257
HEAD_DIM = HIDDEN // HEADS
LINEARS = {"qkv": (3 * HIDDEN, HIDDEN, {"ln": True}), "dense": (HIDDEN, HIDDEN, {"residual": True}),
           "fc": (4 * HIDDEN, HIDDEN, {"ln": True, "gelu": True}), "proj": (HIDDEN, 4 * HIDDEN, {"residual": True})}
SWEEP = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
         for n, k, w, s in itertools.product((1, 2, 4, 8, 16), (256, 512, 1024), (2, 4, 8), (3,))]
COLUMNS = ["part", "batch", "n", "k", "weights", "variant", "us_per_launch", "gb_per_s"]


def per_launch_us(launches, repeats: int = 20) -> float:
    """Microseconds per launch of `launches` (one callable per layer), captured once as one graph."""
    for launch in launches:  # compile, tune, warm
        launch()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for launch in launches:
            launch()
    for _ in range(3):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / repeats / len(launches)


def with_config(config):
    """The gemv tuner held to one configuration (it times nothing when it has one)."""
    tuner = kernels._tuned_gemv_kernel
    tuner.configs, tuner.cache = [config], {}
    tuner.early_config_prune = None


def restore_tuner():
    tuner = kernels._tuned_gemv_kernel
    tuner.configs, tuner.cache = kernels.BLOCKS, {}
    tuner.early_config_prune = kernels._fitting


def gemv_rows(batch: int, weights: str, sweep: bool) -> list[dict]:
    rows = []
    x = torch.randn(batch, 4 * HIDDEN, device="cuda", dtype=torch.float16)
    ln = (torch.ones(HIDDEN, device="cuda", dtype=torch.float16), torch.zeros(HIDDEN, device="cuda",
                                                                             dtype=torch.float16), 1e-5)
    shapes = dict(LINEARS, lm_head=(VOCAB, HIDDEN, {"ln": True, "argmax": True}))
    for part, (n, k, fused) in shapes.items():
        copies = 4 if part == "lm_head" else LAYERS
        stored = [(torch.randn(n, k, device="cuda", dtype=torch.float16) / k**0.5) for _ in range(copies)]
        scales = [None] * copies
        if weights == "int8" and part != "lm_head":
            stored, scales = zip(*(quantize_int8(w) for w in stored), strict=True)
        bias = torch.randn(n, device="cuda", dtype=torch.float16)
        residual = torch.randn(batch, n, device="cuda", dtype=torch.float16)
        best = kernels.argmax_slots(batch, torch.device("cuda"))
        rows_in = x[:, :k].contiguous()
        options = {"ln": ln if fused.get("ln") else None, "residual": residual if fused.get("residual") else None,
                   "gelu": fused.get("gelu", False)}

        def launches(options=options, stored=stored, scales=scales, rows_in=rows_in, bias=bias, best=best,
                     part=part):
            if part == "lm_head":
                return [lambda w=w: kernels.gemv(rows_in, w, ln=options["ln"], argmax_into=best) for w in stored]
            return [lambda w=w, s=s: kernels.gemv(rows_in, w, bias, scale=s, **options)
                    for w, s in zip(stored, scales, strict=True)]

        bytes_read = stored[0].numel() * stored[0].element_size()

        def row(variant, us, n=n, k=k, part=part, bytes_read=bytes_read):
            rows.append({"part": part, "batch": batch, "n": n, "k": k, "weights": weights, "variant": variant,
                         "us_per_launch": round(us, 3), "gb_per_s": round(bytes_read / us / 1000, 1)})
            print(f"{part:8s} b{batch} {weights:5s} {variant:34s} {us:7.2f} us  {bytes_read / us / 1000:7.1f} GB/s",
                  flush=True)

        restore_tuner()
        row("tuned (what an engine records)", per_launch_us(launches()))
        tuned = kernels.tuning()
        kernels.PDL = False
        row("tuned, without PDL", per_launch_us(launches()))
        kernels.PDL = None
        if options["ln"] is not None and kernels.row_tile(batch) >= kernels.LN_APART_ROWS:
            kernels.LN_APART_ROWS, apart = 10**9, kernels.LN_APART_ROWS
            restore_tuner()
            row("tuned, layer norm fused in (not apart)", per_launch_us(launches()))
            kernels.LN_APART_ROWS = apart
        row("  tuned as " + ",".join(f"{e['kwargs']['BLOCK_N']}x{e['kwargs']['BLOCK_K']}w{e['num_warps']}"
                                     f"s{e['num_stages']}" for e in tuned), float("nan"))
        if part != "lm_head" and weights == "fp16":
            row("cuBLAS F.linear (unfused)", per_launch_us([lambda w=w, x=rows_in, b=bias: F.linear(x, w, b)
                                                            for w in stored]))
        if sweep:
            for config in SWEEP:
                if batch > 1 and config.kwargs["BLOCK_N"] < kernels.DOT_MIN:
                    continue
                with_config(config)
                try:
                    us = per_launch_us(launches(), repeats=5)
                except Exception as error:  # out of resources: a configuration this GPU cannot run
                    print(f"  {config}: {type(error).__name__}", flush=True)
                    continue
                kw = config.kwargs
                row(f"{kw['BLOCK_N']}x{kw['BLOCK_K']} w{config.num_warps} s{config.num_stages}", us)
        restore_tuner()
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

    def kernel(cache, block_t, warps):
        kernels._attention_kernel[(batch, HEADS)](qkv, cache, positions, out, HEADS, HEAD_DIM**-0.5,
                                                  CAPACITY=capacity, HEAD_DIM=HEAD_DIM, BLOCK_T=block_t,
                                                  WHOLE_CACHE=False, PDL=False, num_warps=warps)

    row("SDPA + mask over the span", per_launch_us(
        [lambda c=c: F.scaled_dot_product_attention(q, c[:, 0], c[:, 1], attn_mask=mask) for c in caches]))
    row("kernels.attention (as the step runs it)", per_launch_us(
        [lambda c=c: kernels.attention(qkv, c, positions) for c in caches]))
    kernels.PDL = False
    row("kernels.attention, without PDL", per_launch_us(
        [lambda c=c: kernels.attention(qkv, c, positions) for c in caches]))
    kernels.PDL = None
    for block_t, warps in itertools.product((32, 64, 128, 256), (2, 4, 8)) if sweep else ():
        row(f"kernel BLOCK_T {block_t} w{warps}",
            per_launch_us([lambda c=c, bt=block_t, w=warps: kernel(c, bt, w) for c in caches]))
    reference = F.scaled_dot_product_attention(q, caches[0][:, 0], caches[0][:, 1], attn_mask=mask)
    error = (kernels.attention(qkv, caches[0], positions) - reference.reshape(batch, -1)).abs().max().item()
    print(f"attention b{batch} len {length}: max |kernel - SDPA| {error:.2e}", flush=True)
    assert error < 1e-2
    return rows


def argmax_rows() -> list[dict]:
    rows = []
    h = torch.randn(1, HIDDEN, device="cuda", dtype=torch.float16)
    ln = (torch.ones(HIDDEN, device="cuda", dtype=torch.float16), torch.zeros(HIDDEN, device="cuda",
                                                                             dtype=torch.float16), 1e-5)
    heads = [torch.randn(VOCAB, HIDDEN, device="cuda", dtype=torch.float16) / 32 for _ in range(4)]
    best = kernels.argmax_slots(1, torch.device("cuda"))
    for variant, launches in (
            ("lm_head logits, then torch.argmax", [lambda w=w: kernels.gemv(h, w, ln=ln, out_dtype=torch.float32)
                                                   .argmax(-1) for w in heads]),
            ("lm_head with its argmax epilogue", [lambda w=w: (best.fill_(kernels.NO_ARGMAX),
                                                               kernels.gemv(h, w, ln=ln, argmax_into=best))
                                                  for w in heads])):
        us = per_launch_us(launches)
        rows.append({"part": "lm_head+argmax", "batch": 1, "n": VOCAB, "k": HIDDEN, "weights": "fp16",
                     "variant": variant, "us_per_launch": round(us, 3), "gb_per_s": ""})
        print(f"lm_head+argmax {variant:40s} {us:7.2f} us", flush=True)
    logits = kernels.gemv(h, heads[0], ln=ln, out_dtype=torch.float32)
    best.fill_(kernels.NO_ARGMAX)
    kernels.gemv(h, heads[0], ln=ln, argmax_into=best)
    assert int(kernels.argmax_of(best)) == int(logits.argmax()), "argmax epilogue differs from torch.argmax"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sweep", action="store_true", help="also every block configuration (minutes)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name().replace(" ", "_")
    with open(out / f"kernel_bench_{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for part in (lambda: attention_rows(args.sweep), argmax_rows, lambda: gemv_rows(1, "fp16", sweep=args.sweep),
                     lambda: gemv_rows(8, "fp16", sweep=False), lambda: gemv_rows(64, "fp16", sweep=False),
                     lambda: gemv_rows(1, "int8", sweep=False), lambda: gemv_rows(64, "int8", sweep=False)):
            writer.writerows(part())
            f.flush()


if __name__ == "__main__":
    main()
