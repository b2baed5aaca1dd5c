"""Run by tests/test_kernels.py under Triton's CPU interpreter (TRITON_INTERPRET=1): trtflow's small-batch decode
kernels (backends/torch/kernels.py) against torch, printed as JSON.

    TRITON_INTERPRET=1 PYTHONPATH=<triton>:workflow/scripts python tests/kernel_check.py HF_DIR WORK
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from test_runtime import TINY_TOKEN_IDS, engine_flags  # noqa: E402  (tests/ is this script's folder)
from trtflow.backends.torch import kernels  # noqa: E402
from trtflow.backends.torch.build import build  # noqa: E402
from trtflow.backends.torch.kvcache import ContiguousKV  # noqa: E402
from trtflow.backends.torch.model import ParallelGPT2  # noqa: E402
from trtflow.backends.torch.weight_only import quantize_int8  # noqa: E402
from trtflow.formats import cmodel  # noqa: E402
from trtflow.formats.artifact import read_json  # noqa: E402
from trtflow.gpt2 import ModelDims  # noqa: E402


def gemv_errors() -> dict[str, float]:
    """Each fused form against torch in fp32, for shapes that do and do not fill the kernel's blocks, at batch 1 and
    at a batch that is not a power of two; int8 weights with their per-channel scales as weight_only quantizes."""
    torch.manual_seed(0)
    errors = {}
    for m, n, k in ((1, 384, 128), (1, 100, 300), (1, 64, 1024), (3, 384, 128), (3, 100, 300), (8, 64, 1024)):
        x, weight = torch.randn(m, k).half(), (torch.randn(n, k) / k**0.5).half()
        bias, residual, ln_w, ln_b = torch.randn(n).half(), torch.randn(m, n).half(), torch.randn(k).half(), \
            torch.randn(k).half()
        q, scale = quantize_int8(weight)
        f32 = {name: t.float() for name, t in dict(x=x, w=weight, b=bias, r=residual, lw=ln_w, lb=ln_b).items()}
        dequantized = q.float() * scale.float()[:, None]
        cases = {
            "ln+bias": (kernels.gemv(x, weight, bias, ln=(ln_w, ln_b, 1e-5)),
                        F.linear(F.layer_norm(f32["x"], (k,), f32["lw"], f32["lb"], 1e-5), f32["w"], f32["b"])),
            "bias+gelu+residual": (kernels.gemv(x, weight, bias, residual=residual, gelu=True),
                                   F.gelu(F.linear(f32["x"], f32["w"], f32["b"]), approximate="tanh") + f32["r"]),
            "plain fp32 out": (kernels.gemv(x, weight, out_dtype=torch.float32), F.linear(f32["x"], f32["w"])),
            "int8 ln+bias": (kernels.gemv(x, q, bias, ln=(ln_w, ln_b, 1e-5), scale=scale),
                             F.linear(F.layer_norm(f32["x"], (k,), f32["lw"], f32["lb"], 1e-5), dequantized, f32["b"])),
            "int8 bias+residual": (kernels.gemv(x, q, bias, residual=residual, scale=scale),
                                   F.linear(f32["x"], dequantized, f32["b"]) + f32["r"]),
        }
        if m > 1:  # a residual gemv leaving its rows' statistics, the next one's layer norm taking them
            square, ln2_w, ln2_b = (torch.randn(n, n) / n**0.5).half(), torch.randn(n).half(), torch.randn(n).half()
            stats, = kernels.row_stats(m, n, torch.device("cpu"))
            h = kernels.gemv(x, weight, bias, residual=residual, stats_into=stats)
            cases["bias+residual, statistics out"] = (h, F.linear(f32["x"], f32["w"], f32["b"]) + f32["r"])
            cases["ln from statistics in"] = (
                kernels.gemv(h, square, ln=(ln2_w, ln2_b, 1e-5), ln_stats=stats),
                F.linear(F.layer_norm(h.float(), (n,), ln2_w.float(), ln2_b.float(), 1e-5), square.float()))
            model = SimpleNamespace(w={"sq.weight": square, "sq.bias": bias, "ln.weight": ln2_w, "ln.bias": ln2_b})
            weight_f, bias_f, sums = kernels.folded(model, "sq", "ln")
            cases["ln folded into the weight, statistics in"] = (
                kernels.gemv(h, weight_f, bias_f, ln_folded=(sums, 1e-5), ln_stats=stats, gelu=True),
                F.gelu(F.linear(F.layer_norm(h.float(), (n,), ln2_w.float(), ln2_b.float(), 1e-5), square.float(),
                                f32["b"]), approximate="tanh"))
        for name, (got, want) in cases.items():
            assert got.shape == (m, n), (name, got.shape)
            errors[f"{m}x{n}x{k} {name}"] = (got.float() - want).abs().max().item() / want.abs().max().item()
    return errors


def decode_steps(hf_dir: Path, work: Path, batch: int, weight_only: bool, steps: int = 4, device: str = "cpu") -> dict:
    """kernels.decode on an fp16 engine (weight-only int8 or not) against model.decode of the same stored weights
    computing in fp32, both fed the reference's greedy tokens from `batch` different ones (so that a near tie cannot
    make every later token differ). `ties`: where the two argmaxes differ, the reference's logit gap between them
    and the step's largest logit difference."""
    flags = engine_flags(max_batch_size=batch, max_input_len=8, max_output_len=8, cuda_graphs=True,
                         torch_compile="triton", use_weight_only=weight_only)
    name = f"b{batch}{'-int8' if weight_only else ''}"
    source = cmodel.convert(hf_dir, work / name / "c", 1, "float16", progress=False)
    engine = build(source, work / name / "e", flags, "0" * 10, TINY_TOKEN_IDS)
    from safetensors.torch import load_file

    dims = ModelDims.from_json(read_json(engine / "config.json")["model"])
    half = {k: v.to(device) for k, v in load_file(engine / "rank0.safetensors").items()}
    fast = ParallelGPT2(dims, dims.heads, 1, half)
    widened = {k: v if v.dtype == torch.int8 else v.float() for k, v in half.items()}
    reference = ParallelGPT2(dims, dims.heads, 1, widened)
    capacity = max(16, steps + batch)
    caches = [ContiguousKV(dims.layers, batch, dims.heads, capacity, dims.head_dim, dtype, torch.device(device))
              for dtype in (torch.float16, torch.float32)]
    token, tokens, ties, worst = torch.arange(5, 5 + batch, device=device), {"kernels": [], "reference": []}, [], 0.0
    for step in range(steps):
        position = torch.arange(step, step + batch, device=device)  # rows at different positions, as left-aligned
        got = kernels.decode(fast, token, position, caches[0])
        want = reference.decode(token, position, caches[1], capacity)
        error = (got - want).abs().max().item()
        worst = max(worst, error / want.abs().max().item())
        mine, token = got.argmax(-1), want.argmax(-1)
        ties += [{"step": step, "row": row, "gap": (want[row, token[row]] - want[row, mine[row]]).item(),
                  "error": error} for row in (mine != token).nonzero().flatten().tolist()]
        tokens["kernels"].append(mine.tolist())
        tokens["reference"].append(token.tolist())
    return {"applies": kernels.applies(fast, batch), "int8": any(v.dtype == torch.int8 for v in half.values()),
            "way": kernels.norm_way(fast, batch), "folded": sorted(k for k in fast.w if k.endswith(".ln_folded")),
            "relative_logit_error": worst, "ties": ties, **tokens}


def attention_errors() -> dict[str, float]:
    """The attention kernel against softmax(q·kᵀ/√d)·v in fp32 over each row's first position+1 slots, with rows
    whose lengths are one slot, several of the kernel's blocks and a block and a bit; slots beyond hold garbage
    the kernel must not read."""
    torch.manual_seed(1)
    heads, head_dim, capacity = 3, 16, 80
    positions = torch.tensor([0, 47, 16, 79])
    cache = torch.randn(4, 2, heads, capacity, head_dim).half()
    qkv = torch.randn(4, 3 * heads * head_dim).half()
    for row, position in enumerate(positions.tolist()):
        cache[row, :, :, position + 1:] = float("nan")
    got = kernels.attention(qkv, cache, positions).float()
    errors = {}
    for row, position in enumerate(positions.tolist()):
        q = qkv[row].float().view(3, heads, head_dim)[0][:, None, :]  # [h, 1, d]
        k, v = (cache[row, i, :, : position + 1].float() for i in (0, 1))  # [h, n, d]
        want = ((q @ k.transpose(-1, -2)) / head_dim**0.5).softmax(-1) @ v
        errors[f"position {position}"] = (got[row] - want.reshape(-1)).abs().max().item() / want.abs().max().item()
    return errors


def greedy_argmax() -> dict:
    """The lm_head kernel's argmax epilogue against torch.argmax of the same products in fp32, with an exact tie
    across two programs' blocks (the first index wins) and an all-negative row, then the bookkeeping kernel's state
    against what graphs.StaticDecoder._step computes."""
    torch.manual_seed(2)
    n, k = 300, 64
    weight = (torch.randn(n, k) / 8).abs().half()
    weight[40] = weight[250] = 1.0  # rows 40 and 250, in different programs' blocks: row 0's greatest product, tied
    x = torch.randn(3, k).half()
    x[0] = 1.0
    x[2] = -x[2].abs()  # all of row 2's products negative
    logits = F.linear(x.float(), weight.float())
    best = kernels.argmax_slots(3, torch.device("cpu"))
    kernels.gemv(x, weight, argmax_into=best)
    state = {"tokens": torch.tensor([1, 2, 3]), "positions": torch.tensor([5, 6, 7]), "step": torch.tensor([2]),
             "finished": torch.tensor([False, True, False]), "end_id": torch.tensor([int(logits[2].argmax())]),
             "stop_at_end": torch.tensor([True]), "out": torch.zeros(3, 6, dtype=torch.long), "best": best.clone()}
    kernels.finish_step(state)
    return {"kernel": kernels.argmax_of(best).tolist(), "torch": logits.argmax(-1).tolist(),
            "tied": bool(logits[0, 40] == logits[0, 250]),
            "state": {name: t.tolist() for name, t in state.items()}, "end_id": int(logits[2].argmax())}


def tuning_round_trip() -> bool:
    """Choices as the engine rule records them (JSON): `tune`'s per shape, and the autotuner's per its key (the only
    kind engines recorded before `tune`), handed back by compiled.load as a job opening the engine does: the tuner
    then holds exactly them."""
    from trtflow.backends.torch import compiled

    recorded = [{"shape": [64, 4096, 1024, "torch.int8", "torch.float16"], "kwargs": {"BLOCK_N": 32, "BLOCK_K": 128},
                 "num_warps": 4, "num_stages": 4},
                {"key": [1, 3072, 1024, "torch.float16", "torch.float16"], "kwargs": {"BLOCK_N": 8, "BLOCK_K": 256},
                 "num_warps": 4, "num_stages": 3}]
    kernels.clear_tuning()
    compiled.load(Path("engine"), json.loads(json.dumps({**compiled.toolchain(), "file": None, "kernels": recorded})))
    return kernels.tuning() == recorded


def context_linears() -> dict:
    """kernels.context_linear (the context's int8 linears and lm_head under torch_compile: triton) against the
    dequantized product: through gemv once `tune` has chosen the shape, through F.linear where it has not."""
    from trtflow.backends.torch.weight_only import quantize_int8

    torch.manual_seed(3)
    x, weight, bias = torch.randn(60, 256).half(), (torch.randn(384, 256) / 16).half(), torch.randn(384).half()
    q, scale = quantize_int8(weight)
    expected = x.float() @ (q.float() * scale.float()[:, None]).T + bias.float()
    rows, head = torch.randn(3, 256).half(), (torch.randn(500, 256) / 16).half()
    calls, gemv = [], kernels.gemv
    kernels.gemv = lambda *args, **kwargs: calls.append(args[1].shape) or gemv(*args, **kwargs)
    try:
        out = {}
        for chosen in (False, True):
            kernels.clear_tuning()
            if chosen:
                kernels._CHOSEN[kernels.shape_of(60, q, x)] = kernels._CHOSEN[kernels.shape_of(3, head, rows)] = \
                    kernels.DOT_BLOCKS[0]
            int8 = kernels.context_linear(x, q, bias, scale=scale)
            logits = kernels.context_linear(rows, head, out_dtype=torch.float32)
            out[f"chosen {chosen}"] = {
                "int8 error": ((int8.float() - expected).abs().max() / expected.abs().max()).item(),
                "lm_head error": (logits - rows.float() @ head.float().T).abs().max().item(),
                "lm_head dtype": str(logits.dtype), "through gemv": [list(shape) for shape in calls]}
            calls.clear()
    finally:
        kernels.gemv = gemv
        kernels.clear_tuning()
    return out


def configurations_timed() -> dict[str, list]:
    """Which block configurations the tuner times for a batch and input width (kernels._fitting)."""
    cases = {"batch 1, K 1024": (1, 1024), "batch 8, K 1024": (8, 1024), "batch 8, K 128": (8, 128),
             "batch 64, K 4096": (64, 4096)}
    return {name: sorted((c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]) for c in kernels._fitting(
        kernels.BLOCKS, {}, BLOCK_M=m, K_PAD=k)) for name, (m, k) in cases.items()}


def refused_statistics() -> list[str]:
    """gemv's answers to row statistics it cannot take (for one row, of the wrong shape, without the layer norm) and
    to a folded layer norm without them, and `folded`'s to an int8 weight."""
    x, weight = torch.zeros(4, 32).half(), torch.zeros(48, 32).half()
    stats = kernels.row_stats(4, 32, torch.device("cpu"))[0]
    return [refusal(lambda: kernels.gemv(x[:1], weight,
                                         stats_into=kernels.row_stats(1, 48, torch.device("cpu"))[0])),
            refusal(lambda: kernels.gemv(x, weight, stats_into=stats)),  # statistics of 32 outputs, not 48
            refusal(lambda: kernels.gemv(x, weight, ln_stats=stats)),
            refusal(lambda: kernels.gemv(x, weight, ln_folded=(weight[:, 0].float(), 1e-5))),  # no statistics
            refusal(lambda: kernels.folded(SimpleNamespace(w={"q.weight": weight.to(torch.int8)}), "q", "ln"))]


def refusal(call) -> str:
    """The ValueError's message `call` raises, or "accepted"."""
    try:
        call()
    except ValueError as error:
        return str(error)
    return "accepted"


def too_many_rows() -> str:
    return refusal(lambda: kernels.gemv(torch.zeros(kernels.MAX_BATCH + 1, 16).half(), torch.zeros(8, 16).half()))


if __name__ == "__main__":
    hf, work = Path(sys.argv[1]), Path(sys.argv[2])
    decodes = {f"batch {b}{' int8' if wo else ''}": decode_steps(hf, work, b, wo)
               for b, wo in ((1, False), (3, False), (1, True), (3, True), (20, False), (20, True))}
    print(json.dumps({"gemv": gemv_errors(), "decode": decodes, "attention": attention_errors(),
                      "greedy": greedy_argmax(), "too_many_rows": too_many_rows(),
                      "refused_statistics": refused_statistics(),
                      "tuning_round_trip": tuning_round_trip(), "context_linears": context_linears(),
                      "configurations_timed": configurations_timed()}))
