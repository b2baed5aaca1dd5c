"""The GPU suite: the paths CPU tests only run eagerly (CUDA-graph capture, torch.compile, NCCL) and the GPU
architecture refusal with the real accelerator probe. CI has no GPU and skips it, saying so; it runs on the lent
H100/H200 with `python -m pytest -m gpu tests/test_gpu.py` (last results: docs/benchmarks/data/*-gpu-suite/)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="NOT TESTED here: no CUDA GPU (the GPU suite)")]

PROMPTS = [[5, 17, 300, 2, 999, 41, 7], list(range(100, 130))]


@pytest.fixture(scope="module")
def engines(tiny_gpt2, tmp_path_factory):
    from test_runtime import TINY_TOKEN_IDS, engine_flags
    from trtflow.backends.torch.build import build
    from trtflow.formats import cmodel

    root = tmp_path_factory.mktemp("gpu-engines")
    source = cmodel.convert(tiny_gpt2, root / "c", 1, "float16", progress=False)
    variants = {"eager": {}, "graphs": {"decode": "cuda-graph"}, "compile": {"decode": "compile"},
                "gemv": {"decode": "compile-gemv"},
                "triton": {"decode": "kernels"},
                "int8-triton": {"use_weight_only": True, "decode": "kernels"},
                "int8": {"use_weight_only": True},
                "int8-gemv": {"use_weight_only": True, "decode": "compile-gemv"}}
    return {name: build(source, root / name, engine_flags(**flags), "0" * 10, TINY_TOKEN_IDS)
            for name, flags in variants.items()}


def generator(engine_dir):
    from trtflow.backends.torch.generator import TorchEngineGenerator
    from trtflow.infra.dist import init_distributed

    return TorchEngineGenerator(engine_dir, init_distributed())


def test_the_decode_step_is_captured_as_a_cuda_graph_and_matches_eager(engines):
    eager, graphs = generator(engines["eager"]), generator(engines["graphs"])
    assert graphs.device.type == "cuda" and graphs.compute_dtype == torch.float16
    expected = eager.generate(PROMPTS, 24, ignore_eos=True).output_ids
    assert graphs.generate(PROMPTS, 24, ignore_eos=True).output_ids == expected
    graph, _, _ = graphs.static._graphs[len(PROMPTS)]
    assert isinstance(graph, torch.cuda.CUDAGraph)
    assert graphs.generate(PROMPTS, 24, ignore_eos=True).output_ids == expected  # replayed, same tokens


@pytest.mark.parametrize("variant", ["compile", "gemv"])
def test_the_compiled_decode_step_matches_eager(engines, variant):
    eager, compiled = generator(engines["eager"]), generator(engines[variant])
    expected = eager.generate([PROMPTS[0]], 16, ignore_eos=True).output_ids
    assert compiled.generate([PROMPTS[0]], 16, ignore_eos=True).output_ids == expected
    assert compiled.static._compiled is not None  # the step went through torch.compile


@pytest.mark.parametrize("variant", ["triton", "int8-triton"])
def test_trtflows_triton_kernels_decode_small_batches_as_eager_does(engines, variant):
    """decode: kernels: batches up to kernels.MAX_BATCH through backends/torch/kernels/ inside the CUDA
    graph, fp16 or weight-only int8 linears; the same greedy tokens as the same weights run eagerly."""
    eager = generator(engines["int8" if variant.startswith("int8") else "eager"])
    kernels = generator(engines[variant])
    assert kernels.static.uses_kernels(1) and kernels.static.uses_kernels(len(PROMPTS))
    for batch in ([PROMPTS[0]], PROMPTS):
        assert kernels.generate(batch, 16, ignore_eos=True).output_ids == eager.generate(batch, 16,
                                                                                         ignore_eos=True).output_ids
    assert kernels.static._compiled is None  # torch.compile never set up: every step ran the kernels
    if variant.startswith("int8"):  # its context's int8 linears ran the kernels too, their row tile tuned at build
        from trtflow.backends.torch.kernels.launch import row_tile
        from trtflow.formats.artifact import read_json

        record = read_json(engines[variant] / "config.json")["compiled"]
        assert kernels.model.context_linear is not None
        assert row_tile(sum(map(len, PROMPTS))) in {entry["shape"][0] for entry in record["kernels"]}


@pytest.mark.parametrize("weight_only", [False, True])
@pytest.mark.parametrize("batch", [3, 17, 40, 64])
def test_trtflows_triton_kernels_decode_batches_of_many_rows_as_the_reference_model_does(tiny_gpt2, tmp_path, batch,
                                                                                        weight_only):
    """3 rows (a tile of 16: layer norms from the statistics of the kernel before), 17 and 40 (tiles of 32 and 64,
    rows masked off) and 64 (a whole tile) through KernelStep.decode on the GPU, rows at different positions: fp16
    with QKV's and fc's layer norms folded into their weights from 32 rows, int8 with each layer norm a kernel
    apart, against the engine's stored weights computed in fp32, both fed the reference's tokens
    (kernel_check.decode_steps): logits within fp16 rounding, and a greedy token differs only at a near tie, where
    the reference's top two are closer than the step's largest logit difference. (Compared token for token with the
    eager engine over 12 steps, one row of 40 differed in fp16 and in int8 alike: a near tie, most likely.)"""
    from kernel_check import decode_steps

    way = "statistics" if batch < 16 else "apart" if weight_only else "folded"
    decode = decode_steps(tiny_gpt2, tmp_path, batch, weight_only, steps=6, device="cuda")
    assert decode["applies"] and decode["way"] == way
    assert len(decode["folded"]) == (2 * 2 - 1 if way == "folded" else 0)
    assert decode["relative_logit_error"] < 5e-3
    assert all(tie["gap"] <= 2 * tie["error"] for tie in decode["ties"]), decode["ties"]


@pytest.mark.parametrize("batch, weight_only", [(3, True), (17, False), (64, False), (64, True)])
def test_the_kernels_decode_with_k_split_as_the_reference_model_does(tiny_gpt2, tmp_path, batch, weight_only):
    """Every linear but the lm_head with K split 3 ways (kernel_check.SplitTable, strips of 32 over the tiny model's
    64 and 256 inputs: chunks of one strip, some empty), on the GPU, where the programs of a block add their
    partial sums at once and the last to arrive runs the epilogue (split.py), which the interpreter runs one after
    another; as the unsplit test above."""
    from kernel_check import SplitTable, decode_steps
    from trtflow.backends.torch.kernels.split import workspace

    decode = decode_steps(tiny_gpt2, tmp_path, batch, weight_only, steps=6, device="cuda",
                          table=SplitTable(block_k=32))
    assert decode["relative_logit_error"] < 5e-3
    assert all(tie["gap"] <= 2 * tie["error"] for tie in decode["ties"]), decode["ties"]
    assert workspace(torch.device("cuda"), 1).abs().sum().item() == 0


@pytest.mark.parametrize("weight_only", [False, True])
def test_one_rows_three_kernels_a_layer_decode_as_the_five_kernel_step_and_the_reference(tiny_gpt2, tmp_path,
                                                                                         weight_only):
    """kernels/row.py on the GPU (their partial sums meeting by atomic adds from many programs at once, which the
    interpreter runs one after another): one row for 10 steps from position 0 against step.py's five kernels and
    the engine's weights computed in fp32 (kernel_check.row_steps)."""
    from kernel_check import row_steps

    run = row_steps(tiny_gpt2, tmp_path, weight_only, device="cuda")
    assert run["row steps"] == 10
    assert run["relative error"]["five"] < 2e-3 and run["relative error"]["reference"] < 5e-3, run
    assert run["row"] == run["five"] == run["reference"], run


def test_trtflows_triton_kernels_stop_rows_at_the_end_id_as_eager_does(engines):
    """The bookkeeping kernel (kernels.finish_step): with an end id that one row reaches mid-run, that row ends
    there and the other goes on, as the eager step decides it."""
    eager, kernels = generator(engines["eager"]), generator(engines["triton"])
    free = eager.generate(PROMPTS, 16, ignore_eos=True).output_ids
    end = next(token for token in free[1][2:] if token not in free[0])  # a token only row 1 generates
    expected = eager.generate(PROMPTS, 16, end_id=end).output_ids
    assert kernels.generate(PROMPTS, 16, end_id=end).output_ids == expected
    assert expected[0] == free[0] and len(expected[1]) < len(free[1])


def test_a_triton_engine_records_its_tuned_blocks_and_a_fresh_process_times_none(engines):
    """Built on a GPU, a decode: kernels engine (max_batch_size ≤ 8) holds no torch.compile artifacts, only
    the block sizes its kernels were tuned to at build; a fresh process opening it has them before its first step
    and generates eager's tokens."""
    import json
    import subprocess
    import sys

    from conftest import ROOT

    record = json.loads((engines["triton"] / "config.json").read_text())["compiled"]
    assert record["file"] is None and record["kernels"]
    from trtflow.backends.torch.kernels import launch, tuning

    # chosen by tuning.tune (no autotuner entry) per row tile (the shape's first entry), for every tile a batch up
    # to max_batch_size pads to
    assert record["batch_sizes"] == tuning.covering(record["batch_sizes"])
    assert all("shape" in entry for entry in record["kernels"]), record["kernels"]
    assert {entry["shape"][0] for entry in record["kernels"]} == {launch.row_tile(b) for b in record["batch_sizes"]}
    expected = generator(engines["eager"]).generate([PROMPTS[0]], 16, ignore_eos=True).output_ids
    code = ("import json, sys; from trtflow.backends.torch.generator import TorchEngineGenerator as G; "
            "from trtflow.infra.dist import init_distributed as d; "
            "g = G(sys.argv[1], d()); tuned = g.tuning.to_json(); "
            f"tokens = g.generate([{PROMPTS[0]}], 16, ignore_eos=True).output_ids; "
            "print(json.dumps([tuned, tokens, g.tuning.to_json()]))")
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    out = subprocess.run([sys.executable, "-c", code, str(engines["triton"])], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    tuned, tokens, after = json.loads(out.stdout.strip().splitlines()[-1])
    assert tuned == record["kernels"] and tokens == expected
    assert after == record["kernels"]  # every kernel the job ran had its blocks recorded: none was tuned anew


def test_a_weight_only_engine_decodes_the_same_captured_and_compiled(engines):
    """int8 linears widened inside the compiled multiply-and-sum matmuls, replayed as a CUDA graph: the tokens of
    the same int8 engine run eagerly (whose numerics the CPU suite checks against HF)."""
    eager, compiled = generator(engines["int8"]), generator(engines["int8-gemv"])
    assert compiled.model.weights.layers[0].qkv.weight.dtype == torch.int8
    for batch in ([PROMPTS[0]], PROMPTS):
        assert_same_or_near_tie(eager, compiled, batch, 16)


def assert_same_or_near_tie(eager, other, batch: list[list[int]], steps: int, tolerance: float = 1e-2) -> None:
    """`other`'s greedy tokens equal eager's, or first differ where eager's logits hold both tokens within
    `tolerance` of its largest logit: a near tie that another order of summation may flip, not a fault."""
    want = eager.generate(batch, steps, ignore_eos=True).output_ids
    got = other.generate(batch, steps, ignore_eos=True).output_ids
    for prompt, mine, theirs in zip(batch, want, got, strict=True):
        if mine == theirs:
            continue
        at = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
        logits = eager.forward_logits(prompt + mine[:at])[-1]
        gap = abs((logits[mine[at]] - logits[theirs[at]]).item())
        assert gap <= tolerance * logits.abs().max().item(), (at, gap, logits.abs().max().item())


def test_the_engine_rule_compiles_the_decode_step_into_the_folder_for_this_gpu(engines, tmp_path):
    """Built with torch_compile on a GPU, the folder holds torch.compile's artifacts, recorded with this GPU's
    architecture; a fresh process loads them and generates what eager generates."""
    import json
    import subprocess
    import sys

    from trtflow.backends.torch import compiled

    config = json.loads((engines["gemv"] / "config.json").read_text())
    assert config["compiled"]["sm"] == compiled.toolchain()["sm"] and config["compiled"]["batch_sizes"] == [1, 8]
    assert (engines["gemv"] / compiled.ARTIFACT).stat().st_size > 0
    expected = generator(engines["eager"]).generate([PROMPTS[0]], 16, ignore_eos=True).output_ids
    code = ("import json, sys; from trtflow.backends.torch.generator import TorchEngineGenerator as G; "
            "from trtflow.infra.dist import init_distributed as d; "
            f"print(json.dumps(G(sys.argv[1], d()).generate([{PROMPTS[0]}], 16, ignore_eos=True).output_ids))")
    from conftest import ROOT

    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")}  # as a job has it
    out = subprocess.run([sys.executable, "-c", code, str(engines["gemv"])], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


def test_nccl_all_reduce_and_the_row_parallel_step(tmp_path):
    import torch.distributed as dist
    from trtflow.infra.dist import all_reduce
    from trtflow.tp import row_parallel

    port = __import__("socket").socket()
    port.bind(("127.0.0.1", 0))
    address = f"tcp://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    dist.init_process_group("nccl", init_method=address, rank=0, world_size=1, device_id=torch.device("cuda", 0))
    try:
        assert dist.get_backend() == "nccl"
        x, weight, bias = (torch.randn(*shape, device="cuda") for shape in ((3, 8), (5, 8), (5,)))
        expected = torch.nn.functional.linear(x, weight, bias)
        summed = row_parallel(x, weight, bias, torch.nn.functional.linear, all_reduce, world_size=2)
        assert torch.allclose(summed, expected, atol=1e-5)  # one rank's all_reduce over NCCL is the identity
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NOT TESTED here: tp 2 over NCCL needs two GPUs")
def test_tp2_over_nccl_matches_hugging_face(tiny_gpt2, tmp_path):
    """Two ranks on two GPUs, all-reduces over NCCL: logits within 1e-3 of HF fp32 and the same greedy tokens."""
    import json
    import subprocess
    from pathlib import Path

    from test_runtime import PROMPTS as CHECK_PROMPTS
    from test_runtime import TINY_TOKEN_IDS, engine_flags
    from trtflow.backends.torch.build import build
    from trtflow.formats import cmodel
    from trtflow.hf_reference import HFGenerator
    from trtflow.infra.launch import launch_command

    hf = HFGenerator(tiny_gpt2, torch.device("cpu"), TINY_TOKEN_IDS, "float32")
    hf_reference = {"logits": hf.forward_logits(CHECK_PROMPTS[0]),
                    "tokens": [hf.generate([p], 32, ignore_eos=True).output_ids[0] for p in CHECK_PROMPTS]}

    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 2, "float32", progress=False)
    engines = [str(build(source, tmp_path / name, engine_flags(**flags), "0" * 10, TINY_TOKEN_IDS))
               for name, flags in (("eager", {}), ("graphs", {"decode": "cuda-graph"}))]
    (tmp_path / "prompts.json").write_text(json.dumps(CHECK_PROMPTS))
    out = tmp_path / "out.json"
    check = str(Path(__file__).with_name("tp_check.py"))
    proc = subprocess.run(launch_command(2, check, [str(out), str(tmp_path / "prompts.json"), *engines]),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for engine_dir, result in json.loads(out.read_text()).items():
        diff = (torch.tensor(result["logits"]) - hf_reference["logits"]).abs().max().item()
        assert diff < 1e-3, f"{engine_dir}: max |logit - HF| = {diff}"
        assert result["single"] == hf_reference["tokens"] and result["batch"] == hf_reference["tokens"], engine_dir


def test_auto_resolves_from_the_real_probe_to_an_engine_that_decodes_as_eager(engines):
    """decode: auto on this GPU: nvidia-smi's architecture is torch's; the path it resolves to at tp 1 (the kernels
    on an H100/H200, else the CUDA graph) decodes the tokens eager does."""
    import yaml
    from conftest import ROOT
    from trtflow.flags import KERNEL_ARCHS, decode_of
    from trtflow.infra.machine import probe_arch

    arch = probe_arch()
    assert arch == "{}.{}".format(*torch.cuda.get_device_capability())
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())  # (the GPU box has no jsonschema)
    assert config["build"]["decode"] == "auto"
    config["gpu_arch"] = arch
    decode = decode_of(config, 1)
    assert decode == ("kernels" if arch in KERNEL_ARCHS else "cuda-graph") and decode_of(config, 2) == "cuda-graph"
    auto = generator(engines[{"kernels": "triton", "cuda-graph": "graphs"}[decode]])
    expected = generator(engines["eager"]).generate(PROMPTS, 24, ignore_eos=True).output_ids
    assert auto.generate(PROMPTS, 24, ignore_eos=True).output_ids == expected


def test_an_engine_built_for_another_architecture_is_refused_by_the_real_probe(tmp_path):
    from trtflow.backends.trtllm.runner import check_provenance
    from trtflow.formats.artifact import write_json
    from trtflow.formats.provenance import accelerator
    from trtflow.generation import EngineMismatchError

    here = accelerator()["sm"]
    other = "80" if here != "80" else "90"
    write_json(tmp_path / "PROVENANCE.json", {"tensorrt_llm": "0.8.0", "accelerator": {"sm": other}})
    with pytest.raises(EngineMismatchError, match=f"built for SM {other} but this GPU is SM {here}"):
        check_provenance(tmp_path, "0.8.0")
