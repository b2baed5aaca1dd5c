"""The Triton kernels of `decode: kernels` (backends/torch/kernels/) on the CPU, through Triton's own
interpreter: CI has no GPU, so this is where their arithmetic is checked on every change; their speed and their
CUDA-graph capture are the GPU suite's (tests/test_gpu.py). `make triton-interpreter` puts Triton in `.triton/`,
apart from the project's venv (the CPU build of torch does not need it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

TRITON = ROOT / ".triton"
pytestmark = pytest.mark.skipif(not (TRITON / "triton").is_dir(),
                                reason="NOT TESTED here: Triton is not in .triton/ (make triton-interpreter)")


@pytest.fixture(scope="module")
def checked(tiny_gpt2, tmp_path_factory):
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(TRITON), str(ROOT / "workflow" / "scripts")])}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "kernel_check.py"), str(tiny_gpt2),
                           str(tmp_path_factory.mktemp("kernels"))], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_each_fused_linear_form_equals_torch(checked):
    assert len(checked["linear"]) == 6 * 5 + 3 * 3  # six shapes, three of them over several rows
    for case, error in checked["linear"].items():
        assert error < 2e-3, f"{case}: relative error {error}"  # fp16 output rounding


def test_each_fused_linear_form_with_k_split_equals_torch_and_leaves_the_workspace_as_zeros(checked):
    # the three shapes over several rows, K split 3 ways (kernel_check.SplitTable): inputs of 128 (the last chunk
    # empty), 300 (the last short) and 1,024; the partial sums combined by the last program of each block
    assert set(checked["split"]) == {case for case in checked["linear"] if not case.startswith("1x")}
    for case, error in checked["split"].items():
        assert error < 2e-3, f"{case}: relative error {error}"
    assert checked["workspace left"] == 0  # shared by every launch, never cleared between them


def test_the_qkv_kernel_writes_k_and_v_at_each_rows_position_and_nowhere_else(checked):
    assert set(checked["qkv"]) == {f"{case} {part}" for case in ("1 rows", "3 rows", "3 rows int8", "3 rows split")
                                   for part in ("output", "cache")}
    for case, error in checked["qkv"].items():
        assert error < (2e-3 if case.endswith("output") else 1e-6), f"{case}: {error}"


def test_the_decode_step_follows_the_reference_model_at_batch_1_3_and_20_fp16_and_int8_and_with_k_split(checked):
    ways = {"batch 1": "pass", "batch 3": "statistics", "batch 1 int8": "pass", "batch 3 int8": "statistics",
            "batch 20": "folded", "batch 20 int8": "apart",  # 20 rows: a tile of 32
            "batch 20 split": "folded"}  # every linear but the lm_head K split
    assert set(checked["decode"]) == set(ways)
    for case, decode in checked["decode"].items():
        assert decode["applies"], case
        assert decode["int8"] == ("int8" in case), case
        assert decode["way"] == ways[case], case
        # folded: every layer's fc, and QKV but the first layer's (its layer norm has no statistics: apart)
        assert len(decode["folded"]) == (2 * 2 - 1 if ways[case] == "folded" else 0), (case, decode["folded"])
        assert (decode["folded_bytes"] > 0) == (ways[case] == "folded"), case
        assert decode["relative_logit_error"] < 5e-3, case
        assert decode["kernels"] == decode["reference"], case


def test_one_row_runs_three_kernels_a_layer_as_the_five_kernel_step_and_the_reference_do(checked):
    """kernels/row.py: dense's and proj's partial products summed by atomic adds in fp32, from position 0 past the
    interpreter's 8-slot attention blocks, on random layer-norm gains and biases (conftest's tiny model)."""
    for case, run in checked["row"].items():
        assert run["row steps"] == 10, case  # every step at one row ran the row kernels
        assert run["relative error"]["five"] < 2e-3, case  # fp16 roundings of a different summation order
        assert run["relative error"]["reference"] < 5e-3, case
        assert run["row"] == run["five"] == run["reference"], case


def test_what_the_launches_cannot_take_is_refused_with_the_reason(checked):
    refused = checked["refused"]
    assert "for two or more rows" in refused["one row"]
    assert "a contiguous (4, 2, 16)" in refused["wrong width"] and "not (2, 2, 16)" in refused["wrong width"]
    assert "give it (Norm(layer_norm=…, statistics=…))" in refused["no layer norm"]
    assert "takes its statistics from Norm(statistics=…) alone" in refused["folded without"]
    assert "int8 weight cannot take its layer norm's γ" in refused["folded int8"]
    assert "at most 64 rows, not 65" in refused["too many rows"]
    assert "an int8 weight needs its per-channel scale" in refused["int8 without scale"]
    assert "contiguous cache [4, 2, heads, capacity, head_dim] of heads·head_dim = 32" in refused["cache"]
    assert "take one row over contiguous caches [1, 2, 2, capacity, 16]" in refused["row kernels"]


def test_an_engines_tuning_table_reads_back_as_recorded(checked):
    assert checked["tuning_round_trip"] == {"same": True, "has shape": True}


def test_the_autotuner_fallback_zeroes_the_row_sums_before_each_candidate(checked):
    assert checked["autotuner_hooks"] == {"zeroed": True, "zeroed after the last": True, "user hook": True}


def test_context_linears_run_the_kernel_once_their_shape_is_tuned_and_match_the_dequantized_product(checked):
    linears = checked["context_linears"]
    assert linears["chosen False"]["through the kernel"] == []  # no choice for the shape: dequantized, F.linear
    assert linears["chosen True"]["through the kernel"] == [[384, 256], [500, 256]]
    for case in linears.values():
        assert case["int8 error"] < 2e-3 and case["lm_head error"] < 1e-2, case
        assert case["lm_head dtype"] == "torch.float32"


def test_the_tuner_times_the_configurations_of_the_batchs_path_that_fit_the_input(checked):
    timed = checked["configurations_timed"]
    assert len(timed["batch 1, K 1024"]) == 10  # tuning.ROW_BLOCKS, all of them
    dot = [[16, 128, 1], [16, 256, 1], [16, 512, 1], [32, 128, 1], [64, 64, 1], [64, 128, 1]]
    split = [[32, 128, 4], [64, 64, 2], [64, 64, 4], [64, 128, 2], [64, 128, 8]]
    assert timed["batch 8, K 1024"] == timed["batch 64, K 4096"] == sorted(dot + split)  # DOT_ and SPLIT_BLOCKS
    assert timed["batch 64, K 1024, no split (the lm_head)"] == dot
    # ≤ 128 wide, and no split into a chunk without a strip of its own (64 × 2 is the one that fits 128)
    assert timed["batch 8, K 128"] == [[16, 128, 1], [32, 128, 1], [64, 64, 1], [64, 64, 2], [64, 128, 1]]


def test_the_attention_kernel_reads_each_rows_filled_slots_as_softmax_attention_does(checked):
    attention = checked["attention"]
    assert set(attention) == {f"position {p}{ahead}" for p in (0, 47, 16, 79) for ahead in ("", " ahead 1", " ahead 2")}
    for case, error in attention.items():
        assert error < 2e-3, f"{case}: relative error {error}"  # fp16 output rounding; NaN past a row's slots


def test_the_lm_head_argmax_epilogue_is_torch_argmax_and_the_step_bookkeeping_that_of_the_decoder(checked):
    greedy = checked["greedy"]
    assert greedy["tied"] and greedy["kernel"] == greedy["torch"] == [40, greedy["torch"][1], greedy["end_id"]]
    state, end = greedy["state"], greedy["end_id"]
    # graphs.StaticDecoder._step on the same state: a finished row repeats the end id, a row reaching it finishes
    assert state["tokens"] == [40, end, end]
    assert state["finished"] == [False, True, True]
    assert [row[2] for row in state["out"]] == state["tokens"] and state["step"] == [3]
    assert state["positions"] == [6, 7, 8]
    assert state["best"] == [-(2**63)] * 3  # emptied for the next step


@pytest.fixture(scope="module")
def sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(TRITON), str(ROOT / "workflow" / "scripts")])
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "sm90_check.py")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_kernel_of_the_step_compiles_for_sm90_through_tritons_jit_as_hopper_runs_it(sm90):
    # what the interpreter never does: Triton's JIT specializing the step's real arguments and building for the
    # GPU (a stand-in driver names sm_90); with PDL, every row tile, fp16 and int8, K split or not
    compiled = sm90["kernels"]
    assert {k["kernel"] for k in compiled} == {
        "_linear_kernel", "_qkv_kernel", "_argmax_kernel", "_attention_kernel", "_greedy_step_kernel",
        "_qkv_row_kernel", "_attend_dense_kernel", "_mlp_kernel", "_sum_row_kernel"}
    assert all(k["pdl"] for k in compiled)
    for kernel in ("_linear_kernel", "_qkv_kernel"):
        tiles = {(k["BLOCK_M"], k.get("SPLIT_K", 1) > 1) for k in compiled if k["kernel"] == kernel}
        assert tiles >= {(tile, split) for tile in (16, 32, 64) for split in (False, True)}, (kernel, tiles)
    assert not any(k.get("SPLIT_K", 1) > 1 for k in compiled if k["kernel"] == "_argmax_kernel")
    assert {k["AHEAD"] for k in compiled if k["kernel"] == "_attention_kernel"} == {0, 1, 2}  # kernel_bench's sweep
    # no local-memory spills in what runs by default at one row and in attention, nor in any split candidate
    quiet = [k for k in compiled if k["spilled"] and (k["kernel"] not in ("_linear_kernel", "_qkv_kernel")
                                                      or k.get("SPLIT_K", 1) > 1)]
    assert not quiet, quiet
