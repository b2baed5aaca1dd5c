"""Run by tests/test_kernels.py under Triton's CPU interpreter (TRITON_INTERPRET=1): trtflow's decode kernels
(backends/torch/kernels/) against torch, printed as JSON.

    TRITON_INTERPRET=1 PYTHONPATH=<triton>:workflow/scripts python tests/kernel_check.py HF_DIR WORK
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from test_runtime import TINY_TOKEN_IDS, engine_flags  # noqa: E402  (tests/ is this script's folder)
from trtflow.backends.torch import kernels  # noqa: E402
from trtflow.backends.torch.build import build  # noqa: E402
from trtflow.backends.torch.kernels import launch, tuning  # noqa: E402
from trtflow.backends.torch.kernels import row as row_kernels  # noqa: E402
from trtflow.backends.torch.kernels.linear import linear, lm_head_argmax, qkv_into_cache  # noqa: E402
from trtflow.backends.torch.kernels.operands import Epilogue, Norm  # noqa: E402
from trtflow.backends.torch.kernels.split import workspace  # noqa: E402
from trtflow.backends.torch.kvcache import ContiguousKV  # noqa: E402
from trtflow.backends.torch.model import ParallelGPT2  # noqa: E402
from trtflow.backends.torch.state import DecodeState  # noqa: E402
from trtflow.backends.torch.weight_only import quantize_int8  # noqa: E402
from trtflow.backends.torch.weights import GPT2Weights, LayerNorm, Linear  # noqa: E402
from trtflow.formats import cmodel  # noqa: E402
from trtflow.formats.artifact import read_json  # noqa: E402
from trtflow.gpt2 import ModelDims  # noqa: E402

TABLE = kernels.TuningTable()  # empty: the interpreter runs fixed blocks


class SplitTable(kernels.TuningTable):
    """A tuning table that runs every linear of 2 or more rows with K split 3 ways in strips of `block_k`
    (split.py), so that chunks end short of K and some are empty (they must still count in: K 128 in strips of 64,
    K 64 in strips of 32); the lm_head's argmax, which does not split, and one row as the empty table does."""

    def __init__(self, block_k: int = 64):
        super().__init__()
        self.split = {"BLOCK_N": 32, "BLOCK_K": block_k, "SPLIT_K": 3, "num_warps": 4, "num_stages": 2}

    def has(self, key):
        return key[0] > 1

    def kernel_for(self, kernel, autotune_key, key):
        if kernel.fn.__name__ == "_argmax_kernel":
            return kernel, launch.INTERPRETED_BLOCKS
        return kernel, self.split


def linear_errors(table: kernels.TuningTable = TABLE) -> dict[str, float]:
    """Each fused form against torch in fp32, for shapes that do and do not fill the kernel's blocks, at one row and
    at row counts that are not powers of two; random layer-norm gains and biases; int8 weights with their
    per-channel scales as weight_only quantizes. With a SplitTable, the shapes of several rows, K split."""
    torch.manual_seed(0)
    errors = {}
    for m, n, k in ((1, 384, 128), (1, 100, 300), (1, 64, 1024), (3, 384, 128), (3, 100, 300), (8, 64, 1024)):
        if m == 1 and isinstance(table, SplitTable):
            continue
        x, weight = torch.randn(m, k).half(), (torch.randn(n, k) / k**0.5).half()
        bias, residual = torch.randn(n).half(), torch.randn(m, n).half()
        ln = LayerNorm.of(torch.randn(k).half(), torch.randn(k).half(), 1e-5)
        q, scale = quantize_int8(weight)
        f32 = {name: t.float() for name, t in dict(x=x, w=weight, b=bias, r=residual).items()}
        normed = F.layer_norm(f32["x"], (k,), ln.weight.float(), ln.bias.float(), 1e-5)
        dequantized = q.float() * scale.float()[:, None]
        plain, int8 = Linear(weight, bias), Linear(q, bias, scale)

        def run(lin, norm=Norm(), epilogue=Epilogue(), x=x):
            return linear(x, lin, norm, epilogue, tuning=table)

        cases = {
            "ln+bias": (run(plain, Norm(ln)), F.linear(normed, f32["w"], f32["b"])),
            "bias+gelu+residual": (run(plain, epilogue=Epilogue(gelu=True, residual=residual)),
                                   F.gelu(F.linear(f32["x"], f32["w"], f32["b"]), approximate="tanh") + f32["r"]),
            "plain fp32 out": (run(Linear(weight), epilogue=Epilogue(out_dtype=torch.float32)),
                               F.linear(f32["x"], f32["w"])),
            "int8 ln+bias": (run(int8, Norm(ln)), F.linear(normed, dequantized, f32["b"])),
            "int8 bias+residual": (run(int8, epilogue=Epilogue(residual=residual)),
                                   F.linear(f32["x"], dequantized, f32["b"]) + f32["r"]),
        }
        if m > 1:  # a residual linear leaving its rows' statistics, the next one's layer norm taking them
            square = (torch.randn(n, n) / n**0.5).half()
            ln2 = LayerNorm.of(torch.randn(n).half(), torch.randn(n).half(), 1e-5)
            stats, = kernels.row_stats(m, n, torch.device("cpu"))
            h = run(plain, epilogue=Epilogue(residual=residual, row_sums_into=stats))
            cases["bias+residual, statistics out"] = (h, F.linear(f32["x"], f32["w"], f32["b"]) + f32["r"])
            normed2 = F.layer_norm(h.float(), (n,), ln2.weight.float(), ln2.bias.float(), 1e-5)
            cases["ln from statistics in"] = (linear(h, Linear(square), Norm(ln2, stats), tuning=table),
                                              F.linear(normed2, square.float()))
            folded = kernels.fold(ln2, Linear(square, bias))
            cases["ln folded into the weight, statistics in"] = (
                linear(h, folded, Norm(statistics=stats), Epilogue(gelu=True), tuning=table),
                F.gelu(F.linear(normed2, square.float(), f32["b"]), approximate="tanh"))
        for name, (got, want) in cases.items():
            assert got.shape == (m, n), (name, got.shape)
            errors[f"{m}x{n}x{k} {name}"] = (got.float() - want).abs().max().item() / want.abs().max().item()
    return errors


def qkv_cache_writes() -> dict[str, float]:
    """qkv_into_cache at 1 and 3 rows (rows at different positions), layer-normed in the loop and int8, and at 3
    rows with K split: its output against torch, and the cache's slot at each row's position against that output's K
    and V; no other slot written."""
    torch.manual_seed(4)
    heads, head_dim, capacity = 4, 16, 12
    hidden = heads * head_dim
    errors = {}
    for m, int8, table in ((1, False, TABLE), (3, False, TABLE), (3, True, TABLE), (3, False, SplitTable())):
        x, weight = torch.randn(m, hidden).half(), (torch.randn(3 * hidden, hidden) / 8).half()
        bias = torch.randn(3 * hidden).half()
        ln = LayerNorm.of(torch.randn(hidden).half(), torch.randn(hidden).half(), 1e-5)
        q, scale = quantize_int8(weight)
        lin = Linear(q, bias, scale) if int8 else Linear(weight, bias)
        w = lin.weight.float() * lin.scale.float()[:, None] if int8 else weight.float()
        want = F.linear(F.layer_norm(x.float(), (hidden,), ln.weight.float(), ln.bias.float(), 1e-5), w,
                        bias.float())
        cache = torch.zeros(m, 2, heads, capacity, head_dim).half()
        positions = torch.tensor([5, 0, 11][:m])
        got = qkv_into_cache(x, lin, Norm(ln), cache, positions, tuning=table).float()
        kv = got.view(m, 3, heads, head_dim)[:, 1:]
        written = cache[torch.arange(m), :, :, positions].float()  # [m, 2, heads, head_dim]
        cache[torch.arange(m), :, :, positions] = 0
        name = f"{m} rows{' int8' if int8 else ''}{' split' if table is not TABLE else ''}"
        errors[f"{name} output"] = (got - want).abs().max().item() / want.abs().max().item()
        errors[f"{name} cache"] = (written - kv).abs().max().item() + cache.float().abs().max().item()
    return errors


def engine_models(hf_dir: Path, work: Path, batch: int, weight_only: bool, device: str = "cpu"):
    """(dims, the fp16 engine's model, the same stored weights computing in fp32) of a decode: kernels engine."""
    flags = engine_flags(max_batch_size=batch, max_input_len=8, max_output_len=8, decode="kernels",
                         use_weight_only=weight_only)
    name = f"b{batch}{'-int8' if weight_only else ''}"
    source = cmodel.convert(hf_dir, work / name / "c", 1, "float16", progress=False)
    engine = build(source, work / name / "e", flags, "0" * 10, TINY_TOKEN_IDS)
    from safetensors.torch import load_file

    dims = ModelDims.from_json(read_json(engine / "config.json")["model"])
    half = {k: v.to(device) for k, v in load_file(engine / "rank0.safetensors").items()}
    fast = ParallelGPT2(dims, dims.heads, 1, GPT2Weights.from_engine(half, dims.eps))
    widened = {k: v if v.dtype == torch.int8 else v.float() for k, v in half.items()}
    return dims, fast, ParallelGPT2(dims, dims.heads, 1, GPT2Weights.from_engine(widened, dims.eps))


def row_steps(hf_dir: Path, work: Path, weight_only: bool, steps: int = 10, device: str = "cpu") -> dict:
    """One row through row.py's three kernels a layer against step.py's five and the fp32 reference, from position 0
    past the interpreter's 8-slot attention blocks: logits and greedy tokens each step, and how many steps ran the
    row kernels."""
    dims, fast, reference = engine_models(hf_dir, work, 1, weight_only, device)
    step = kernels.KernelStep(fast, TABLE, 1, steps)
    caches = [ContiguousKV(dims.layers, 1, dims.heads, steps, dims.head_dim, dtype, torch.device(device))
              for dtype in (torch.float16, torch.float16, torch.float32)]
    calls, launch = [], row_kernels.row_layers
    row_kernels.row_layers = lambda *args: calls.append(1) or launch(*args)
    token = torch.tensor([7], device=device)
    tokens, errors = {"row": [], "five": [], "reference": []}, {"five": 0.0, "reference": 0.0}
    try:
        for index in range(steps):
            position = torch.tensor([index], device=device)
            got = step.decode(token, position, caches[0].kv)
            row_kernels.ENABLED = False
            five = step.decode(token, position, caches[1].kv)
            row_kernels.ENABLED = True
            want = reference.decode(token, position, caches[2], steps)
            for name, other in (("five", five), ("reference", want)):
                errors[name] = max(errors[name], ((got - other).abs().max() / other.abs().max()).item())
            for name, logits in (("row", got), ("five", five), ("reference", want)):
                tokens[name].append(logits.argmax(-1).item())
            token = want.argmax(-1)
    finally:
        row_kernels.row_layers, row_kernels.ENABLED = launch, True
    return {"row steps": len(calls), "relative error": errors, **tokens}


def decode_steps(hf_dir: Path, work: Path, batch: int, weight_only: bool, steps: int = 4, device: str = "cpu",
                 table: kernels.TuningTable = TABLE) -> dict:
    """KernelStep.decode on an fp16 engine (weight-only int8 or not) against model.decode of the same stored weights
    computing in fp32, both fed the reference's greedy tokens from `batch` different ones (so that a near tie cannot
    make every later token differ). `ties`: where the two argmaxes differ, the reference's logit gap between them
    and the step's largest logit difference."""
    dims, fast, reference = engine_models(hf_dir, work, batch, weight_only, device)
    capacity = max(16, steps + batch)
    step = kernels.KernelStep(fast, table, batch, capacity)
    caches = [ContiguousKV(dims.layers, batch, dims.heads, capacity, dims.head_dim, dtype, torch.device(device))
              for dtype in (torch.float16, torch.float32)]
    token, tokens, ties, worst = torch.arange(5, 5 + batch, device=device), {"kernels": [], "reference": []}, [], 0.0
    for index in range(steps):
        position = torch.arange(index, index + batch, device=device)  # rows at different positions, as left-aligned
        got = step.decode(token, position, caches[0].kv)
        want = reference.decode(token, position, caches[1], capacity)
        error = (got - want).abs().max().item()
        worst = max(worst, error / want.abs().max().item())
        mine, token = got.argmax(-1), want.argmax(-1)
        ties += [{"step": index, "row": row, "gap": (want[row, token[row]] - want[row, mine[row]]).item(),
                  "error": error} for row in (mine != token).nonzero().flatten().tolist()]
        tokens["kernels"].append(mine.tolist())
        tokens["reference"].append(token.tolist())
    folded = [f"layers.{i}.{name}" for i, layer in enumerate(step.folded) for name in ("qkv", "fc")
              if getattr(layer, name) is not None]
    return {"applies": kernels.applies(dims, 1, fast.weights.lm_head.dtype, batch), "int8": fast.weights.quantized,
            "way": kernels.norm_way(batch, fast.weights.quantized).value, "folded": folded,
            "folded_bytes": step.nbytes(), "relative_logit_error": worst, "ties": ties, **tokens}


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
    errors = {}
    for ahead in (0, 1, 2):  # the loads' lead over the arithmetic (attention.attend); 0 as the step runs it
        got = kernels.attention(qkv, cache, positions, {"BLOCK_T": 16, "num_warps": 4, "AHEAD": ahead}).float()
        for row, position in enumerate(positions.tolist()):
            q = qkv[row].float().view(3, heads, head_dim)[0][:, None, :]  # [h, 1, d]
            k, v = (cache[row, i, :, : position + 1].float() for i in (0, 1))  # [h, n, d]
            want = ((q @ k.transpose(-1, -2)) / head_dim**0.5).softmax(-1) @ v
            errors[f"position {position}{f' ahead {ahead}' if ahead else ''}"] = (
                (got[row] - want.reshape(-1)).abs().max().item() / want.abs().max().item())
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
    lm_head_argmax(x, weight, Norm(), best, tuning=TABLE)
    state = DecodeState(tokens=torch.tensor([1, 2, 3]), positions=torch.tensor([5, 6, 7]), step=torch.tensor([2]),
                        finished=torch.tensor([False, True, False]), end_id=torch.tensor([int(logits[2].argmax())]),
                        stop_at_end=torch.tensor([True]), out=torch.zeros(3, 6, dtype=torch.long), best=best.clone())
    kernels.finish_step(state)
    return {"kernel": kernels.argmax_of(best).tolist(), "torch": logits.argmax(-1).tolist(),
            "tied": bool(logits[0, 40] == logits[0, 250]),
            "state": {name: getattr(state, name).tolist() for name in DecodeState.__dataclass_fields__},
            "end_id": int(logits[2].argmax())}


def tuning_round_trip() -> dict:
    """An engine's tuning table as the engine rule records it (JSON: `tune`'s choices per shape, the autotuner's per
    kernel and key) read back as a job opening the engine does, and written again: the same entries. An autotuner
    entry of an engine from before the kernels were split (no `kernel`) is left out."""
    recorded = [{"shape": [64, 4096, 1024, "torch.int8", "torch.float16"], "kwargs": {"BLOCK_N": 32, "BLOCK_K": 128},
                 "num_warps": 4, "num_stages": 4},
                {"key": [1, 3072, 1024, "torch.float16", "torch.float16"], "kernel": "_linear_kernel",
                 "kwargs": {"BLOCK_N": 8, "BLOCK_K": 256}, "num_warps": 4, "num_stages": 3}]
    older = {"key": [1, 1024, 1024, "torch.float16"], "kwargs": {"BLOCK_N": 8, "BLOCK_K": 256}, "num_warps": 4,
             "num_stages": 3}
    table = kernels.TuningTable.from_json(json.loads(json.dumps(recorded + [older])))
    return {"same": table.to_json() == recorded, "has shape": table.has((64, 4096, 1024, "torch.int8", "torch.float16"))}


def autotuner_hooks() -> dict:
    """The hook an engine's table gives Triton's autotuner (the fallback for a shape never tuned), as the autotuner
    calls it before each candidate's launch and after the last: the row sums a linear writes are zeroed (a wider
    candidate writes fewer parts and would leave a narrower one's for the layer norm that reads them all); a
    linear that writes none, and the other kernels, pass."""
    from trtflow.backends.torch.kernels.linear import AUTOTUNE_KEYS, KERNELS

    table = kernels.TuningTable()
    tuners = {name: table.kernel_for(kernel, AUTOTUNE_KEYS[name], ("never tuned",))[0]
              for name, kernel in KERNELS.items()}
    sums = torch.ones(4, 2, 16)
    tuners["linear"].pre_hook({"sums_out_ptr": sums})
    zeroed = sums.abs().sum().item() == 0
    sums.fill_(1)
    tuners["linear"].pre_hook({"sums_out_ptr": sums}, reset_only=True)
    tuners["linear"].pre_hook({"sums_out_ptr": None})
    tuners["qkv"].pre_hook({"kv_ptr": torch.ones(1)})
    return {"zeroed": zeroed, "zeroed after the last": sums.abs().sum().item() == 0,
            "user hook": all(tuner.user_defined_pre_hook for tuner in tuners.values())}


def context_linears() -> dict:
    """kernels.context_linear (the context's int8 linears and lm_head under decode: kernels) against the
    dequantized product: through the linear kernel once the table has the shape, through F.linear where not."""
    torch.manual_seed(3)
    x, weight, bias = torch.randn(60, 256).half(), (torch.randn(384, 256) / 16).half(), torch.randn(384).half()
    q, scale = quantize_int8(weight)
    expected = x.float() @ (q.float() * scale.float()[:, None]).T + bias.float()
    rows, head = torch.randn(3, 256).half(), (torch.randn(500, 256) / 16).half()
    module = sys.modules["trtflow.backends.torch.kernels.linear"]
    calls, launch = [], module.linear
    module.linear = lambda x, lin, *args, **kwargs: calls.append(lin.weight.shape) or launch(x, lin, *args, **kwargs)
    try:
        out = {}
        for chosen in (False, True):
            table = kernels.TuningTable()
            if chosen:
                table.chosen[kernels.shape_of(60, q, x)] = table.chosen[kernels.shape_of(3, head, rows)] = \
                    tuning.DOT_BLOCKS[0]
            int8 = kernels.context_linear(x, q, bias, scale=scale, tuning=table)
            logits = kernels.context_linear(rows, head, out_dtype=torch.float32, tuning=table)
            out[f"chosen {chosen}"] = {
                "int8 error": ((int8.float() - expected).abs().max() / expected.abs().max()).item(),
                "lm_head error": (logits - rows.float() @ head.float().T).abs().max().item(),
                "lm_head dtype": str(logits.dtype), "through the kernel": [list(shape) for shape in calls]}
            calls.clear()
    finally:
        module.linear = launch
    return out


def configurations_timed() -> dict[str, list]:
    """Which block configurations (BLOCK_N, BLOCK_K, SPLIT_K) the tuner times for a batch and input width
    (tuning.candidates)."""
    cases = {"batch 1, K 1024": (1, 1024, True), "batch 8, K 1024": (8, 1024, True), "batch 8, K 128": (8, 128, True),
             "batch 64, K 4096": (64, 4096, True), "batch 64, K 1024, no split (the lm_head)": (64, 1024, False)}
    return {name: sorted((c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"], c.kwargs.get("SPLIT_K", 1))
                         for c in tuning.candidates(m, k, splits)) for name, (m, k, splits) in cases.items()}


def refused() -> dict[str, str]:
    """The launches' answers to what they cannot take: row sums for one row or of the wrong width, statistics
    without their layer norm, a folded layer norm without statistics, γ folded into an int8 weight, more rows than
    a tile, an int8 weight without its scale, a QKV whose cache does not fit it, two rows for the row kernels."""
    x, weight = torch.zeros(4, 32).half(), torch.zeros(48, 32).half()
    cpu = torch.device("cpu")
    stats = kernels.row_stats(4, 32, cpu)[0]
    ln = LayerNorm.of(torch.ones(32).half(), torch.zeros(32).half(), 1e-5)
    folded = kernels.fold(ln, Linear(weight))
    q, scale = quantize_int8(weight)
    return {
        "one row": refusal(lambda: linear(x[:1], Linear(weight),
                                          epilogue=Epilogue(row_sums_into=kernels.row_stats(1, 48, cpu)[0]),
                                          tuning=TABLE)),
        "wrong width": refusal(lambda: linear(x, Linear(weight), epilogue=Epilogue(row_sums_into=stats),
                                              tuning=TABLE)),  # statistics of 32 outputs, not 48
        "no layer norm": refusal(lambda: linear(x, Linear(weight), Norm(statistics=stats), tuning=TABLE)),
        "folded without": refusal(lambda: linear(x, folded, Norm(ln), tuning=TABLE)),
        "folded int8": refusal(lambda: kernels.fold(ln, Linear(q, None, scale))),
        "too many rows": refusal(lambda: linear(torch.zeros(kernels.MAX_BATCH + 1, 32).half(), Linear(weight),
                                                tuning=TABLE)),
        "int8 without scale": refusal(lambda: Linear(q)),
        "cache": refusal(lambda: qkv_into_cache(x, Linear(torch.zeros(96, 32).half()), Norm(),
                                                torch.zeros(4, 2, 2, 8, 8).half(), torch.zeros(4, dtype=torch.long),
                                                tuning=TABLE)),
        "row kernels": refusal(lambda: row_kernels.row_layers(  # two rows
            GPT2Weights(wte=x, wpe=x, ln_f=ln, lm_head=x, layers=()), torch.zeros(2, dtype=torch.long),
            torch.zeros(2, dtype=torch.long), [torch.zeros(2, 2, 2, 8, 16).half()], 2)),
    }


def refusal(call) -> str:
    """The ValueError's message `call` raises, or "accepted"."""
    try:
        call()
    except ValueError as error:
        return str(error)
    return "accepted"


if __name__ == "__main__":
    hf, work = Path(sys.argv[1]), Path(sys.argv[2])
    decodes = {f"batch {b}{' int8' if wo else ''}": decode_steps(hf, work, b, wo)
               for b, wo in ((1, False), (3, False), (1, True), (3, True), (20, False), (20, True))}
    decodes |= {f"batch {b}{' int8' if wo else ''} split": decode_steps(hf, work / "split", b, wo, steps=2,
                                                                           table=SplitTable(block_k=32))
                for b, wo in ((20, False),)}
    rows = {"fp16": row_steps(hf, work / "row", False), "int8": row_steps(hf, work / "row-int8", True)}
    print(json.dumps({"linear": linear_errors(), "split": linear_errors(SplitTable()), "qkv": qkv_cache_writes(),
                      "decode": decodes, "row": rows,
                      "attention": attention_errors(), "greedy": greedy_argmax(), "refused": refused(),
                      "tuning_round_trip": tuning_round_trip(), "autotuner_hooks": autotuner_hooks(),
                      "context_linears": context_linears(),
                      "configurations_timed": configurations_timed(),
                      "workspace left": workspace(torch.device("cpu"), 1).abs().sum().item()}))
