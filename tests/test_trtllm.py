"""The trtllm backend at its boundary: exact command lines, provisioning errors, and the whole DAG for both
flows with the TEST DOUBLES of tests/doubles standing in for TensorRT-LLM (which no machine here has)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, validated
from trtflow.backends.trtllm import build as trtllm_build_stage
from trtflow.backends.trtllm.commands import build_py, trtllm_build
from trtflow.evaluation.tokenizer import token_ids
from trtflow.flags import BuildFlags

DOUBLES = Path(__file__).resolve().parent / "doubles"
BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
PY, EXAMPLES, CMODEL, OUT, WORK = "PY", Path("/ex"), Path("/c/2-gpu"), Path("/out"), Path("/work")


def flags(**changes) -> dict:
    return BuildFlags.from_config({**BASE["build"], "decode": "eager", **changes}, "float16")


BUILD_PY_CASES = [
    (  # the v0.8.0 README's gpt2 command (plus our explicit timing cache and output dir)
        dict(use_gemm_plugin="float16", enable_context_fmha=True), 1, 1,
        ["--use_gpt_attention_plugin", "float16", "--use_gemm_plugin", "float16", "--remove_input_padding",
         "--enable_context_fmha", "--max_batch_size", "8", "--max_input_len", "924", "--max_output_len", "100"]),
    (  # in-flight batching implies plugin, padding removal and paged KV inside build.py
        dict(use_inflight_batching=True, use_gpt_attention_plugin=None, remove_input_padding=False), 2, 2,
        ["--use_inflight_batching", "--use_gpt_attention_plugin", "float16", "--tokens_per_block", "128",
         "--max_batch_size", "8", "--max_input_len", "924", "--max_output_len", "100", "--parallel_build"]),
    (  # no plugins at all: build.py's legacy defaults are all off, so nothing is passed
        dict(use_gpt_attention_plugin=None, remove_input_padding=False), 1, 0,
        ["--max_batch_size", "8", "--max_input_len", "924", "--max_output_len", "100"]),
    (  # fp32-accumulation FMHA and a paged cache of 64-token blocks at tp 4 with only 2 GPUs
        dict(use_gpt_attention_plugin="bfloat16", enable_context_fmha_fp32_acc=True, paged_kv_cache=True,
             tokens_per_block=64, max_batch_size=16), 4, 2,
        ["--use_gpt_attention_plugin", "bfloat16", "--remove_input_padding", "--enable_context_fmha_fp32_acc",
         "--paged_kv_cache", "--tokens_per_block", "64", "--max_batch_size", "16", "--max_input_len", "924",
         "--max_output_len", "100"]),
]


@pytest.mark.parametrize("changes, tp, gpus, tail", BUILD_PY_CASES)
def test_build_py_command_lines(changes, tp, gpus, tail):
    command = build_py(PY, EXAMPLES, CMODEL, OUT, WORK / "model.cache", tp, "float16", flags(**changes), gpus)
    head = [PY, "/ex/gpt/build.py", "--model_dir", "/c/2-gpu", "--world_size", str(tp), "--output_dir", "/out",
            "--timing_cache", "/work/model.cache"]
    assert command.argv == head + tail
    assert command.expected_files == [f"gpt_float16_tp{tp}_rank{r}.engine" for r in range(tp)] + ["config.json"]
    assert "--dtype" not in command.argv and "--hidden_act" not in command.argv
    assert any("ignores --dtype" in note for note in command.notes)
    if tp > gpus and tp > 1:
        assert any("--parallel_build not passed" in note for note in command.notes)


TRTLLM_BUILD_CASES = [
    (dict(), 1, 1, ["--gpt_attention_plugin", "float16", "--gemm_plugin", "disable", "--remove_input_padding", "enable",
                    "--context_fmha", "disable", "--kv_cache_type", "continuous", "--max_batch_size", "8",
                    "--max_input_len", "924", "--max_seq_len", "1024", "--input_timing_cache", "/work/model.cache",
                    "--output_timing_cache", "/work/model.cache", "--workers", "1"]),
    (dict(use_gpt_attention_plugin=None, remove_input_padding=False, paged_kv_cache=True, tokens_per_block=32,
          use_gemm_plugin="float16"), 2, 2,
     ["--gpt_attention_plugin", "disable", "--gemm_plugin", "float16", "--remove_input_padding", "disable",
      "--context_fmha", "disable", "--kv_cache_type", "paged", "--tokens_per_block", "32", "--max_batch_size", "8",
      "--max_input_len", "924", "--max_seq_len", "1024", "--input_timing_cache", "/work/model.cache",
      "--output_timing_cache", "/work/model.cache", "--workers", "2"]),
    (dict(enable_context_fmha_fp32_acc=True, max_input_len=512, max_output_len=200), 4, 1,
     ["--gpt_attention_plugin", "float16", "--gemm_plugin", "disable", "--remove_input_padding", "enable",
      "--context_fmha", "enable", "--kv_cache_type", "continuous", "--max_batch_size", "8", "--max_input_len", "512",
      "--max_seq_len", "712", "--input_timing_cache", "/work/model.cache", "--output_timing_cache",
      "/work/model.cache", "--workers", "1"]),
]


@pytest.mark.parametrize("changes, tp, gpus, tail", TRTLLM_BUILD_CASES)
def test_trtllm_build_command_lines(changes, tp, gpus, tail):
    command = trtllm_build("trtllm-build", Path("/ck"), OUT, WORK / "model.cache", tp, flags(**changes), gpus)
    assert command.argv == ["trtllm-build", "--checkpoint_dir", "/ck", "--output_dir", "/out", *tail]
    assert command.expected_files == [f"rank{r}.engine" for r in range(tp)] + ["config.json"]
    if changes.get("enable_context_fmha_fp32_acc"):
        assert any("run-time flag" in note for note in command.notes)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_llm") is not None,
                    reason="TensorRT-LLM is installed here: its absence cannot be tested")
def test_missing_tensorrt_llm_names_how_to_provision(tmp_path):
    with pytest.raises(trtllm_build_stage.TrtllmUnavailable, match="tensorrt_llm cannot be imported.*Provision"):
        trtllm_build_stage.build(tmp_path, tmp_path / "e", flags(), "0" * 10, {"flow": "0.8"},
                                 {"end_id": 0, "pad_id": 0})


def test_wrong_tensorrt_llm_version_for_the_flow():
    with pytest.raises(trtllm_build_stage.TrtllmUnavailable, match="flow is '0.8' but the installed tensorrt_llm is 1.2.1"):
        trtllm_build_stage.check_flow("1.2.1", "0.8")


def test_an_engine_built_for_another_gpu_architecture_is_refused(tmp_path, monkeypatch):
    """The SM check cannot be reached on a CPU: the accelerator probe is replaced by an H100's."""
    from trtflow.backends.trtllm import runner
    from trtflow.formats.artifact import write_json
    from trtflow.generation import EngineMismatchError

    write_json(tmp_path / "PROVENANCE.json", {"tensorrt_llm": "0.8.0", "accelerator": {"sm": "80"}})
    monkeypatch.setattr(runner, "accelerator", lambda: {"sm": "90"})
    with pytest.raises(EngineMismatchError, match="built for SM 80 but this GPU is SM 90.*rebuild it on this GPU"):
        runner.check_provenance(tmp_path, "0.8.0")
    monkeypatch.setattr(runner, "accelerator", lambda: {"sm": "80"})
    runner.check_provenance(tmp_path, "0.8.0")
    with pytest.raises(EngineMismatchError, match="built with TensorRT-LLM 0.8.0 but 1.2.1 is running"):
        runner.check_provenance(tmp_path, "1.2.1")


# ------------------------------------------------- flag sets through the faithful doubles of the real tools

TINY_INI = {"n_embd": 1024, "n_head": 16, "n_layer": 2, "n_positions": 1024, "vocab_size": 1000,
            "activation_function": "gelu_new", "bias": True, "multi_query_mode": False}
SEED = dict(use_gemm_plugin="float16", enable_context_fmha=True)  # the v0.8.0 README's gpt2 build
# (name, build overrides, storage dtype, tp, flow 0.8 verdict, flow 1.2 verdict): the real tool's verdict,
# "ok" or the message it fails with. trtflow's config must refuse exactly the sets the tool refuses.
FLAG_TABLE = [
    ("seed full set", SEED, "float16", 1, "ok", "ok"),
    ("seed at tp 2", SEED, "float16", 2, "ok", "ok"),
    ("seed at tp 4", SEED, "float16", 4, "ok", "ok"),
    ("bf16 engine", dict(SEED, use_gpt_attention_plugin="bfloat16", use_gemm_plugin="bfloat16"), "bfloat16", 2,
     "ok", "ok"),
    ("plugins off", dict(use_gpt_attention_plugin=None, remove_input_padding=False), "float16", 1, "ok", "ok"),
    ("plugins off, packed input", dict(use_gpt_attention_plugin=None), "float16", 1, "AssertionError",
     "AssertionError"),
    ("plugins off, paged", dict(use_gpt_attention_plugin=None, remove_input_padding=False, paged_kv_cache=True),
     "float16", 1, "AssertionError", "AssertionError"),
    ("in-flight batching", dict(use_inflight_batching=True, use_gpt_attention_plugin=None,
                                remove_input_padding=False), "float16", 2, "ok", "ok"),
    ("paged 64", dict(paged_kv_cache=True, tokens_per_block=64), "float16", 1, "ok", "ok"),
    ("paged 64 with FMHA", dict(SEED, paged_kv_cache=True, tokens_per_block=64), "float16", 1,
     "Context fMHA requires >= 128 tokens per block", "ok"),
    ("paged 128 with FMHA", dict(SEED, paged_kv_cache=True, tokens_per_block=128), "float16", 2, "ok", "ok"),
    ("paged 256 with fp32-acc FMHA", dict(enable_context_fmha_fp32_acc=True, paged_kv_cache=True,
                                          tokens_per_block=256), "float16", 1, "ok", "ok"),
    ("paged 96", dict(paged_kv_cache=True, tokens_per_block=96), "float16", 1, "tokens_per_block must be power of 2",
     "ok"),
    ("weight-only int8", dict(SEED, use_weight_only=True), "float16", 2, "ok", "ok"),
    ("weight-only int4", dict(use_weight_only=True, weight_only_precision="int4"), "float16", 1, "ok", "ok"),
    # accepted by both tools and ignored (FMHA lives in the attention plugin; tokens_per_block in a paged cache):
    # accepted by trtflow too, with a note in the build log
    ("FMHA, plugins off", dict(use_gpt_attention_plugin=None, remove_input_padding=False, enable_context_fmha=True),
     "float16", 1, "ok", "ok"),
    ("fp32-acc FMHA, plugins off", dict(use_gpt_attention_plugin=None, remove_input_padding=False,
                                        enable_context_fmha_fp32_acc=True), "float16", 1, "ok", "ok"),
    ("tokens_per_block 96, not paged", dict(tokens_per_block=96), "float16", 1, "ok", "ok"),
]


# Where trtflow is stricter than the tools, on purpose: lengths past the model's positions (v0.8.0's build.py
# builds it, 1.x warns; positions past n_positions have no embedding) are refused by check_model_fits.


@pytest.mark.parametrize("flow", ["0.8", "1.2"])
def test_a_flag_the_tools_ignore_is_accepted_with_a_note(flow, tmp_path):
    from trtflow.backends.trtllm.commands import ignored_flag_notes

    changes = dict(use_gpt_attention_plugin=None, remove_input_padding=False, enable_context_fmha=True)
    assert command_through_double(flow, changes, "float16", 1, tmp_path).returncode == 0
    build_flags = BuildFlags.from_config({**BASE["build"], "decode": "eager", **changes, "backend": "trtllm"},
                                         "float16")
    assert ignored_flag_notes(build_flags) == ["context FMHA runs inside the GPT attention plugin, which is off: the "
                                               "engine has no context FMHA (the tool accepts the flag and ignores it)"]
    assert ignored_flag_notes(flags(**SEED)) == []


def run_double(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRTFLOW_DOUBLE_RECORD": ""}
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True)


def table_config(changes: dict, dtype: str, tp: int, flow: str) -> dict:
    config = copy.deepcopy(BASE)
    config["build"].update(changes, backend="trtllm")
    config["convert"]["storage_type"] = dtype
    config["trtllm"] = {"flow": flow, "examples_dir": str(DOUBLES / "examples")}
    config["tp"] = [tp]
    return config


def command_through_double(flow: str, changes: dict, dtype: str, tp: int, work: Path) -> subprocess.CompletedProcess:
    """The command trtflow emits for these flags (validation bypassed), run by the double of the real tool."""
    from trtflow.formats.trtllm_ckpt import pretrained_config

    build_flags = BuildFlags.from_config({**BASE["build"], "decode": "eager", **changes, "backend": "trtllm"}, dtype)
    source = work / "source"
    source.mkdir()
    if flow == "0.8":
        ini = {**TINY_INI, "storage_dtype": dtype, "tensor_parallelism": tp}
        (source / "config.ini").write_text("[gpt]\n" + "".join(f"{k} = {v}\n" for k, v in ini.items()))
        command = build_py(sys.executable, DOUBLES / "examples", source, work / "out", work / "model.cache", tp,
                           dtype, build_flags, tp)
    else:
        hf = {"n_embd": 1024, "n_head": 16, "n_layer": 2, "n_positions": 1024, "vocab_size": 1000,
              "architectures": ["GPT2LMHeadModel"]}
        (source / "config.json").write_text(json.dumps(pretrained_config(hf, tp, dtype,
                                                                          build_flags.weight_only_precision)))
        command = trtllm_build(str(DOUBLES / "bin" / "trtllm-build"), source, work / "out", work / "model.cache", tp,
                               build_flags, tp)
    argv = command.argv[1:] if flow == "0.8" else command.argv
    proc = run_double(argv, work)
    if proc.returncode == 0:
        assert sorted(p.name for p in (work / "out").iterdir()) == sorted(command.expected_files)
    return proc


@pytest.mark.parametrize("flow", ["0.8", "1.2"])
@pytest.mark.parametrize("name, changes, dtype, tp, verdict_08, verdict_12", FLAG_TABLE, ids=[r[0] for r in FLAG_TABLE])
def test_flag_sets_are_refused_exactly_where_tensorrt_llm_refuses_them(flow, name, changes, dtype, tp, verdict_08,
                                                                       verdict_12, tmp_path):
    from trtflow.errors import KnownError

    verdict = verdict_08 if flow == "0.8" else verdict_12
    proc = command_through_double(flow, changes, dtype, tp, tmp_path)
    if verdict == "ok":
        assert proc.returncode == 0, proc.stderr
        validated(table_config(changes, dtype, tp, flow))  # and trtflow accepts it
    else:
        assert proc.returncode != 0 and verdict in proc.stderr, proc.stderr
        with pytest.raises(KnownError):
            validated(table_config(changes, dtype, tp, flow))


def test_weight_only_reaches_each_flow_where_tensorrt_llm_takes_it(tmp_path):
    """0.8: build.py's --use_weight_only --weight_only_precision; 1.2: the checkpoint's quantization block, the
    algorithm name convert_checkpoint.py's args_to_quant_config gives it, and no trtllm-build flag."""
    from trtflow.formats.trtllm_ckpt import pretrained_config

    flags = BuildFlags.from_config({**BASE["build"], "decode": "eager", "backend": "trtllm", "use_weight_only": True,
                                    "weight_only_precision": "int4"}, "float16")
    argv = build_py("python", Path("/x"), Path("c"), Path("o"), Path("t"), 1, "float16", flags, 1).argv
    assert argv[argv.index("--use_weight_only") + 1:argv.index("--use_weight_only") + 3] == [
        "--weight_only_precision", "int4"]
    command = trtllm_build("trtllm-build", Path("c"), Path("o"), Path("t"), 1, flags, 1)
    assert not any("weight_only" in a or "quant" in a for a in command.argv)
    assert any("checkpoint's quantization block" in note for note in command.notes)
    hf = {"n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 128, "vocab_size": 1000}
    assert pretrained_config(hf, 1, "float16", "int8")["quantization"]["quant_algo"] == "W8A16"
    assert pretrained_config(hf, 1, "float16", "int4")["quantization"]["quant_algo"] == "W4A16"
    assert pretrained_config(hf, 1, "float16")["quantization"]["quant_algo"] is None


@pytest.mark.parametrize("quantization, message", [
    ({"quant_algo": "INT8_WO"}, "'INT8_WO' is not a valid QuantAlgo"),
    ({"quant_algo": "W8A16", "weight_only_precision": "int8"}, "unexpected keyword argument 'weight_only_precision'"),
])
def test_the_trtllm_build_double_refuses_a_quantization_block_1x_cannot_read(quantization, message, tmp_path):
    from trtflow.formats.trtllm_ckpt import pretrained_config

    config = pretrained_config({"n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 128, "vocab_size": 1000}, 1,
                               "float16")
    config["quantization"].update(quantization)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    proc = run_double([str(DOUBLES / "bin" / "trtllm-build"), "--checkpoint_dir", "c", "--output_dir", "o"], tmp_path)
    assert proc.returncode != 0 and message in proc.stderr


def write_1x_checkpoint_config(folder: Path) -> None:
    from trtflow.formats.trtllm_ckpt import pretrained_config

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(pretrained_config(
        {"n_embd": 64, "n_head": 4, "n_layer": 2, "n_positions": 128, "vocab_size": 1000}, 1, "float16")))


@pytest.mark.parametrize("argv, outcome", [
    (["--paged_kv_cache", "enable", "--kv_cache_type", "continuous"], "AssertionError"),
    (["--paged_kv_cache", "maybe"], "Input should be a valid boolean"),
    (["--streamingllm", "enable"], "StreamingLLM is no longer supported"),
    (["--paged_kv_cache", "disable"], "CONTINUOUS"),
    (["--paged_kv_cache", "true", "--kv_cache_type", "paged"], "PAGED"),
    ([], "PAGED"),
])
def test_the_trtllm_build_double_settles_the_kv_cache_as_buildconfig_does(argv, outcome, tmp_path):
    """The deprecated --paged_kv_cache is read by the pydantic PluginConfig and must agree with --kv_cache_type."""
    write_1x_checkpoint_config(tmp_path / "c")
    proc = run_double([str(DOUBLES / "bin" / "trtllm-build"), "--checkpoint_dir", "c", "--output_dir", "o", *argv],
                      tmp_path)
    if outcome in ("PAGED", "CONTINUOUS"):
        assert proc.returncode == 0, proc.stderr
        build = json.loads((tmp_path / "o" / "config.json").read_text())["build_config"]
        assert build["kv_cache_type"] == outcome and build["plugin_config"]["paged_kv_cache"] == (outcome == "PAGED")
        assert "auto_parallel_config" not in build
    else:
        assert proc.returncode == 1 and outcome in proc.stderr, proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint_dir", "c", "--max_output_len", "100"], "unrecognized arguments: --max_output_len"),
    (["--checkpoint_dir", "c", "--remove_input_padding"], "expected one argument"),
    (["--checkpoint_dir", "c", "--kv_cache_type", "contiguous"], "invalid parse_enum value: 'contiguous'"),
    (["--checkpoint_dir", "c", "--auto_parallel", "2"], "unrecognized arguments: --auto_parallel 2"),
    (["--checkpoint_dir", "c", "--gpus_per_node", "4"], "unrecognized arguments: --gpus_per_node 4"),
    (["--checkpoint_dir", "c", "--gpt_attention_plugin", "fp16"], "invalid choice: 'fp16'"),
    (["--checkpoint_dir", "c", "--context_fmha", "true"], "invalid choice: 'true'"),
])
def test_the_trtllm_build_double_refuses_what_the_1x_parser_refuses(argv, message, tmp_path):
    proc = run_double([str(DOUBLES / "bin" / "trtllm-build"), *argv], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["--model_dir", "m", "--paged_kv_cache", "true"], "unrecognized arguments: true"),
    (["--model_dir", "m", "--use_gpt_attention_plugin", "fp16"], "invalid choice: 'fp16'"),
    (["--model_dir", "m", "--max_seq_len", "1024"], "unrecognized arguments: --max_seq_len"),
    (["--model_dir", "m", "--use_gpt_attention_plugin", "enable"], "invalid choice: 'enable'"),
])
def test_the_build_py_double_refuses_what_the_v080_parser_refuses(argv, message, tmp_path):
    proc = run_double([str(DOUBLES / "examples" / "gpt" / "build.py"), *argv], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr


# ------------------------------------------------------------------ the runner at its boundary


@pytest.fixture
def runner_engine(tmp_path, monkeypatch):
    """A trtllm engine folder as trtflow's build leaves it, with the runner double importable."""
    from trtflow.formats.artifact import atomic_dir, write_json

    def make(version: str, flags_json: dict, world_size: int = 2, inflight: bool = True):
        monkeypatch.setenv("TRTFLOW_DOUBLE_TRTLLM_VERSION", version)
        monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", str(world_size))  # as mpirun -np <world size> sets it
        monkeypatch.syspath_prepend(str(DOUBLES / "site"))
        for name in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
            monkeypatch.delitem(sys.modules, name)
        engine = tmp_path / f"engine-{version}"
        with atomic_dir(engine, {"kind": "engine"}) as tmp:
            config = {"version": version, "pretrained_config": {"mapping": {"world_size": world_size},
                                                                "dtype": "float16", "vocab_size": 64},
                      "build_config": {"max_batch_size": 4, "max_input_len": 16, "max_seq_len": 32,
                                       "kv_cache_type": "PAGED" if inflight else "CONTINUOUS",
                                       "plugin_config": {"gpt_attention_plugin": "float16",
                                                         "remove_input_padding": True}}}
            write_json(tmp / "config.json", config)
            for rank in range(world_size):
                (tmp / f"rank{rank}.engine").write_bytes(b"double")
            write_json(tmp / "PROVENANCE.json", {"tensorrt_llm": version, "build": flags_json, "end_id": 7,
                                                 "pad_id": 5})
        record = tmp_path / f"record-{version}"
        record.mkdir()
        monkeypatch.setenv("TRTFLOW_DOUBLE_RECORD", str(record))
        return engine, record

    return make


def dist_of(rank: int, world_size: int):
    import torch
    from trtflow.infra.dist import DistInfo

    return DistInfo(rank=rank, world_size=world_size, local_rank=rank, local_world_size=world_size,
                    device=torch.device("cpu"))


@pytest.mark.parametrize("version", ["1.2.1", "0.8.0"])
def test_ranks_other_than_0_take_part_and_return_nothing(version, runner_engine, monkeypatch):
    """1.x ModelRunnerCpp.generate returns [] where it cannot enqueue requests (every rank but 0): indexing its
    output there was a TypeError at tp >= 2. 0.8 gives every rank the outputs; rank 0 still reads alone."""
    from trtflow.backends.trtllm.runner import TrtllmGenerator

    engine, record = runner_engine(version, flags(use_gemm_plugin="float16").to_json())
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    off_rank = TrtllmGenerator(engine, dist_of(1, 2)).generate([[1, 2, 3]], 4)
    assert off_rank.output_ids == []
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    on_rank = TrtllmGenerator(engine, dist_of(0, 2)).generate([[1, 2, 3]], 4)
    assert on_rank.output_ids == [[4, 5, 6]]  # the double counts up from the last prompt token; 7 is the end id
    calls = records(record, "generate")
    assert {c["rank"] for c in calls} == {0, 1}


@pytest.mark.parametrize("version, minimum", [("0.8.0", "min_length"), ("1.2.1", "min_tokens")])
def test_end_pad_and_minimum_length_reach_the_runner_under_its_own_names(version, minimum, runner_engine,
                                                                         monkeypatch):
    """End and pad ids come from the engine folder (the tokenizer's), never GPT-2's 50256; the forced length
    uses the keyword each version acts on (the other one is dropped by the real runner without a word)."""
    from trtflow.backends.trtllm.runner import TrtllmGenerator

    engine, record = runner_engine(version, flags().to_json(), world_size=1)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    result = TrtllmGenerator(engine, dist_of(0, 1)).generate([[1, 2, 3]], 8, ignore_eos=True)
    assert result.output_ids == [[4, 5, 6, 7, 8, 9, 10, 11]]  # runs through the end id 7: the minimum is 8
    (call,) = records(record, "generate")
    assert (call["end_id"], call["pad_id"], call[minimum]) == (7, 5, 8)


@pytest.mark.parametrize("version, passed", [("1.2.1", True), ("0.8.0", None)])
def test_fp32_accumulation_fmha_is_a_runtime_option_on_1x(version, passed, runner_engine, monkeypatch):
    from trtflow.backends.trtllm.runner import TrtllmGenerator

    engine, record = runner_engine(version, flags(enable_context_fmha_fp32_acc=True).to_json(), world_size=1)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    TrtllmGenerator(engine, dist_of(0, 1))
    (call,) = records(record, "runner")
    assert call.get("enable_context_fmha_fp32_acc") == passed


def test_a_1x_engine_without_inflight_batching_runs_in_the_python_session(runner_engine, monkeypatch, capsys):
    """1.x's ModelRunnerCpp refuses an engine without in-flight batching at load (the double's gate, as the
    executor); trtflow runs it in ModelRunner as examples/run.py does: SamplingConfig's `min_length`, every rank
    decoding, rank 0 reading, and generate.json saying which runtime ran."""
    from trtflow.backends.trtllm.runner import TrtllmGenerator

    engine, record = runner_engine("1.2.1", flags().to_json(), world_size=2, inflight=False)
    from tensorrt_llm.runtime import ModelRunnerCpp

    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    with pytest.raises(RuntimeError, match="TrtGptModelInflightBatching requires GPT attention"):
        ModelRunnerCpp.from_dir(str(engine), rank=0)
    main = TrtllmGenerator(engine, dist_of(0, 2))
    assert "running it in the Python session (ModelRunner)" in capsys.readouterr().out
    result = main.generate([[1, 2, 3]], 8, ignore_eos=True)
    assert result.output_ids == [[4, 5, 6, 7, 8, 9, 10, 11]] and result.info["runtime"] == "ModelRunner"
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    assert TrtllmGenerator(engine, dist_of(1, 2)).generate([[1, 2, 3]], 4).output_ids == []
    calls = records(record, "generate")
    assert {(c["rank"], c["runtime"], c["min_length"]) for c in calls} == {(0, "ModelRunner", 8), (1, "ModelRunner", 1)}
    assert {r["runtime"] for r in records(record, "runner")} == {"ModelRunner"}


# the flow 1.2 flag sets of FLAG_TABLE whose engines the C++ runner loads (in-flight batching); the rest run in
# the Python session
INFLIGHT_12 = {"in-flight batching", "paged 64", "paged 64 with FMHA", "paged 128 with FMHA",
               "paged 256 with fp32-acc FMHA", "paged 96"}


@pytest.mark.parametrize("name, changes, dtype, tp", [row[:4] for row in FLAG_TABLE if row[5] == "ok"],
                         ids=[row[0] for row in FLAG_TABLE if row[5] == "ok"])
def test_each_flow_12_engine_goes_to_the_runtime_that_loads_it(name, changes, dtype, tp, tmp_path, monkeypatch):
    """Built by the trtllm-build double from trtflow's command, each engine's config.json is read as 1.x's
    ModelConfig::supportsInflightBatching does: the C++ runner double loads exactly those, trtflow sends the
    others to ModelRunner."""
    from trtflow.backends.trtllm.runner import python_session, supports_inflight_batching

    assert command_through_double("1.2", changes, dtype, tp, tmp_path).returncode == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert supports_inflight_batching(config) == (name in INFLIGHT_12)
    assert python_session("1.2.1", config) == (name not in INFLIGHT_12)
    monkeypatch.setenv("TRTFLOW_DOUBLE_TRTLLM_VERSION", "1.2.1")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", str(tp))
    monkeypatch.syspath_prepend(str(DOUBLES / "site"))
    for module in [m for m in sys.modules if m == "tensorrt_llm" or m.startswith("tensorrt_llm.")]:
        monkeypatch.delitem(sys.modules, module)
    from tensorrt_llm.runtime import ModelRunnerCpp

    try:
        ModelRunnerCpp.from_dir(str(tmp_path / "out"), rank=0)
        loads = True
    except RuntimeError as err:
        assert "TrtGptModelInflightBatching requires" in str(err)
        loads = False
    assert loads == (name in INFLIGHT_12)


def test_an_engine_without_recorded_token_ids_is_refused(runner_engine, monkeypatch):
    from trtflow.backends.trtllm.runner import TrtllmGenerator
    from trtflow.formats.artifact import write_manifest
    from trtflow.generation import EngineMismatchError

    engine, _ = runner_engine("1.2.1", flags().to_json(), world_size=1)
    record = json.loads((engine / "PROVENANCE.json").read_text())
    del record["end_id"]
    (engine / "PROVENANCE.json").write_text(json.dumps(record))
    write_manifest(engine, {"kind": "engine"})
    with pytest.raises(EngineMismatchError, match="does not record the tokenizer's end and pad ids"):
        TrtllmGenerator(engine, dist_of(0, 1))


# ------------------------------------------------------------------ the whole DAG with the doubles


# ------------------------------------------------------------------ gptSessionBenchmark (flow 0.8)

GSB = str(DOUBLES / "bin" / "gptSessionBenchmark")


@pytest.fixture
def built_engine(tmp_path):
    """An engine folder of a flow as trtflow's build leaves it (the builder double's files, a manifest and the
    provenance), by tp and build flags."""
    import shutil

    from trtflow.formats.artifact import atomic_dir, write_json

    def make(tp: int, flow: str = "0.8", **changes) -> Path:
        work = tmp_path / f"build-{flow}-tp{tp}"
        work.mkdir()
        assert command_through_double(flow, changes, "float16", tp, work).returncode == 0
        engine = tmp_path / f"engine-{flow}-tp{tp}"
        with atomic_dir(engine, {"kind": "engine"}) as tmp:
            for file in (work / "out").iterdir():
                shutil.copy(file, tmp / file.name)
            write_json(tmp / "PROVENANCE.json", {"tensorrt_llm": VERSIONS[flow], "build_key": "0123456789",
                                                 "end_id": 7, "pad_id": 5})
        return engine

    return make


VERSIONS = {"0.8": "0.8.0", "1.2": "1.2.1"}


def gsb_env(record: Path) -> dict:
    return {**os.environ, "TRTFLOW_DOUBLE_RECORD": str(record), "TRTFLOW_DOUBLE_TRTLLM_VERSION": "0.8.0",
            "PYTHONPATH": os.pathsep.join([str(DOUBLES / "site"), str(ROOT / "workflow" / "scripts")]),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("argv, code, message", [
    (["--engine_dir", "E", "--no_such_flag"], 134, "Option ‘no_such_flag’ does not exist"),
    (["--engine_dir", "E", "--duration", "0.5"], 134, "Argument ‘0.5’ failed to parse"),
    (["--batch_size", "1"], 1, "Please specify engine directory."),
    (["--engine_dir", "E", "--log_level", "debug"], 1, "Unexpected log level: debug"),
])
def test_the_gpt_session_benchmark_double_refuses_what_the_v080_options_refuse(argv, code, message, tmp_path):
    proc = subprocess.run([sys.executable, GSB, *argv], capture_output=True, text=True, env=gsb_env(tmp_path))
    assert proc.returncode == code and message in proc.stdout + proc.stderr


def test_the_gpt_session_benchmark_double_refuses_what_the_v080_session_refuses(built_engine, tmp_path):
    engine = built_engine(2)
    config = json.loads((engine / "config.json").read_text())
    config["builder_config"]["max_num_tokens"] = 100  # as build.py --max_num_tokens 100 writes it
    (engine / "config.json").write_text(json.dumps(config))

    def run(*argv: str, ranks: int = 1) -> subprocess.CompletedProcess:
        env = {**gsb_env(tmp_path), "OMPI_COMM_WORLD_SIZE": str(ranks), "OMPI_COMM_WORLD_RANK": "0"}
        return subprocess.run([sys.executable, GSB, "--engine_dir", str(engine), *argv], capture_output=True,
                              text=True, env=env)

    # the world comes from MPI: a tp-2 engine on one rank
    assert "mpiSize == tp * pp" in run("--model", "gpt").stdout
    # without --model gpt the engine file is looked for under the default name gpt_350m
    assert "Error opening engine file" in run(ranks=2).stdout and "gpt_350m_float16_tp2_rank0.engine" in run(ranks=2).stdout
    # packed input: the largest batch × input length against max_num_tokens, before any configuration runs
    proc = run("--model", "gpt", "--batch_size", "1;2", "--input_output_len", "60,20", ranks=2)
    assert proc.returncode == 1 and "max_num_tokens=100, while trying to benchmark on 120 tokens" in proc.stdout
    assert "[BENCHMARK]" not in proc.stdout
    proc = run("--model", "gpt", "--batch_size", "1", "--input_output_len", "60,20", "--num_runs", "3",
               "--duration", "0", ranks=2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Benchmarking done. Iteration: 3," in proc.stdout
    assert re.search(r"\[BENCHMARK\] batch_size 1 input_length 60 output_length 20 latency\(ms\) [\d.]+ tokensPerSec "
                     r"[\d.]+ gpu_peak_mem\(gb\) 0\.00", proc.stdout)


def test_gpt_session_benchmark_lines_become_the_csv_columns():
    """Its v0.8.0 printf formats: rank 0's [BENCHMARK] lines, N/A where it ran out of memory, every rank's done
    lines (the iterations, where they agree)."""
    from trtflow.backends.trtllm.bench import Case, parse_output

    text = ("Benchmarking done. Iteration: 10, duration: 0.39 sec.\nLatencies: [3.95, 3.94]\n"
            "Benchmarking done. Iteration: 10, duration: 0.40 sec.\n"
            "[BENCHMARK] batch_size 1 input_length 60 output_length 20 latency(ms) 39.47 tokensPerSec 506.69 "
            "gpu_peak_mem(gb) 23.06\n"
            "[BENCHMARK] batch_size 64 input_length 60 output_length 20 latency(ms) N/A tokensPerSec N/A\n")
    rows = parse_output(text)
    assert rows[Case(1, 60, 20)] == {"status": "ok", "iterations": 10, "latency_ms": 39.47, "tokens_per_s": 506.69,
                                     "peak_mem_mb": 23.06e9 / 2**20, "peak_mem_kind": "gpu_device_used"}
    assert rows[Case(64, 60, 20)]["status"].startswith("not run: gptSessionBenchmark ran out of GPU memory")
    assert parse_output(text.replace("Iteration: 10, duration: 0.40", "Iteration: 11, duration: 0.40"))[
        Case(1, 60, 20)]["iterations"] is None


@pytest.mark.parametrize("tp", [1, 2])
def test_a_flow_08_engine_is_benchmarked_by_gpt_session_benchmark_on_its_ranks(tp, built_engine, tmp_path):
    """The stage starts the tool on the engine's MPI ranks, one input/output pair a run, with only the cases the
    engine takes; the rest get `not run` rows without the tool seeing them."""
    import csv

    engine = built_engine(tp, max_batch_size=4)
    record = tmp_path / "record"
    record.mkdir()
    out = tmp_path / "benchmark.csv"
    proc = subprocess.run([sys.executable, "-m", "trtflow.stages.benchmark", "--engine-dir", str(engine), "--model",
                           "demo", "--batch-size", "1;8", "--input-output-len", "60,20;60,100", "--warm-up", "0",
                           "--num-runs", "2", "--duration", "0", "--tool", "gptSessionBenchmark", "--trtllm",
                           json.dumps({"flow": "0.8", "benchmark_tool": GSB}), "--build-key", "0123456789",
                           "--out", str(out)], capture_output=True, text=True,
                          env={**gsb_env(record), "PYTHONPATH": os.pathsep.join([str(DOUBLES / "site"),
                                                                                  str(ROOT / "workflow" / "scripts")])})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["batch_size"], r["input_len"], r["output_len"], r["status"][:7]) for r in rows] == [
        ("1", "60", "20", "ok"), ("1", "60", "100", "ok"), ("8", "60", "20", "not run"), ("8", "60", "100", "not run")]
    assert "batch size 8 > the engine's max_batch_size 4" in rows[2]["status"]
    assert {r["tool"] for r in rows} == {"gptSessionBenchmark"} and {r["tp"] for r in rows} == {str(tp)}
    assert rows[0]["peak_mem_kind"] == "gpu_device_used" and rows[0]["iterations"] == "2"
    calls = records(record, "gpt_session_benchmark")
    assert sorted((c["rank"], c["world"]) for c in calls) == sorted((r, tp) for r in range(tp) for _ in range(2))
    for call in calls:
        argv = call["argv"][1:]
        assert argv[:4] == ["--model", "gpt", "--engine_dir", str(engine)]
        assert argv[argv.index("--batch_size") + 1] == "1"  # batch 8 never reached the tool
        assert argv[argv.index("--input_output_len") + 1] in ("60,20", "60,100")
    assert (tmp_path / "benchmark.csv.sha256").is_file()


@pytest.mark.parametrize("tool, settings, message", [
    ("gptSessionBenchmark", {"flow": "0.8", "benchmark_tool": "/nowhere/gptSessionBenchmark"},
     "gptSessionBenchmark not found (trtllm.benchmark_tool: /nowhere/gptSessionBenchmark"),
    ("gptSessionBenchmark", {"flow": "0.8", "benchmark_tool": str(DOUBLES / "bin" / "trtllm-bench"),
                             "examples_dir": None}, None),
])
def test_a_missing_or_failing_benchmark_tool_is_one_line_and_no_csv(tool, settings, message, built_engine, tmp_path):
    """A tool that is not there names where it was looked for and how to build it; a tool that fails (here: given
    the wrong program, which refuses gptSessionBenchmark's flags) leaves no benchmark.csv and points at its output."""
    engine = built_engine(1)
    out = tmp_path / "benchmark.csv"
    proc = run_benchmark_stage(engine, tool, settings, tmp_path, out, tmp_path, "0.8.0")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (message or "gptSessionBenchmark failed (exit 2) on input 60 / output 20; its output is above") in proc.stderr
    assert not out.exists() and not Path(str(out) + ".sha256").exists()


# ------------------------------------------------------------------ trtllm-bench (flow 1.2)

BENCH = str(DOUBLES / "bin" / "trtllm-bench")


def run_benchmark_stage(engine: Path, tool: str, settings: dict, record: Path, out: Path, hf_dir: Path,
                        version: str) -> subprocess.CompletedProcess:
    env = {**gsb_env(record), "TRTFLOW_DOUBLE_TRTLLM_VERSION": version}
    return subprocess.run([sys.executable, "-m", "trtflow.stages.benchmark", "--engine-dir", str(engine), "--model",
                           "demo", "--hf-dir", str(hf_dir), "--batch-size", "1;8", "--input-output-len",
                           "60,20;60,100", "--warm-up", "1", "--num-runs", "3", "--duration", "0", "--tool", tool,
                           "--trtllm", json.dumps(settings), "--build-key", "0123456789", "--out", str(out)],
                          capture_output=True, text=True, env=env)


@pytest.mark.parametrize("tp", [1, 2])
def test_a_flow_12_inflight_engine_is_benchmarked_by_trtllm_bench_latency(tp, built_engine, demo_resources, tmp_path):
    """One trtllm-bench process per batch-1 case over a dataset trtflow writes (exactly the lengths, num_runs
    requests); batch 8 has no latency-mode equivalent and says so; the report's figures become the row."""
    import csv

    engine = built_engine(tp, "1.2", use_inflight_batching=True)
    record, out = tmp_path / "record", tmp_path / "benchmark.csv"
    record.mkdir()
    hf = demo_resources / "models/demo/hf"
    proc = run_benchmark_stage(engine, "trtllm-bench", {"flow": "1.2", "benchmark_tool": BENCH}, record, out, hf,
                               "1.2.1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["batch_size"], r["input_len"], r["output_len"], r["status"][:7], r["tool"]) for r in rows] == [
        ("1", "60", "20", "ok", "trtllm-bench"), ("1", "60", "100", "ok", "trtllm-bench"),
        ("8", "60", "20", "not run", "trtllm-bench"), ("8", "60", "100", "not run", "trtllm-bench")]
    assert "runs one request at a time (max_batch_size 1)" in rows[2]["status"]
    for row in rows[:2]:
        assert row["iterations"] == "3" and row["p50_ms"] and row["ttft_ms"] and row["tp"] == str(tp)
        assert float(row["tokens_per_s"]) == pytest.approx(int(row["output_len"]) / float(row["latency_ms"]) * 1000,
                                                           rel=1e-3)
    calls = records(record, "trtllm_bench")
    assert len(calls) == 2 and {c["engine_world_size"] for c in calls} == {tp} and {c["requests"] for c in calls} == {3}
    argv = calls[0]["argv"][1:]
    assert argv[:7] == ["--model", "demo", "--model_path", str(hf), "--workspace", argv[5], "latency"]
    assert argv[argv.index("--backend") + 1] == "tensorrt" and argv[argv.index("--engine_dir") + 1] == str(engine)
    assert argv[argv.index("--warmup") + 1] == "1" and argv[argv.index("--num_requests") + 1] == "3"


def test_the_trtllm_bench_double_refuses_what_the_1x_tool_refuses(built_engine, demo_resources, tmp_path):
    engine = built_engine(1, "1.2")  # the default flags: no in-flight batching
    hf = str(demo_resources / "models/demo/hf")
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps({"task_id": 0, "input_ids": [1] * 60, "output_tokens": 20}) + "\n")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, BENCH, *argv], capture_output=True, text=True, env=gsb_env(tmp_path))

    latency = ["latency", "--backend", "tensorrt", "--engine_dir", str(engine), "--dataset", str(dataset)]
    for argv, message in [
        (["--model_path", hf, *latency], "Missing option '--model' / '-m'."),
        (["--model", "demo", "--model_path", hf, "latency", "--engine", str(engine)], "No such option: --engine"),
        (["--model", "demo", "--model_path", hf, "latency", "--dataset", str(tmp_path / "none.jsonl")],
         "Path '" + str(tmp_path / "none.jsonl") + "' does not exist."),
    ]:
        proc = run(*argv)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    proc = run("--model", "demo", "--model_path", hf, *latency, "--max_seq_len", "100")
    assert proc.returncode == 1 and "max_seq_len is not a runtime parameter for C++ backend" in proc.stderr
    proc = run("--model", "demo", "--model_path", hf, *latency)  # the executor loads only in-flight batching
    assert proc.returncode == 1 and "TrtGptModelInflightBatching requires GPT attention plugin" in proc.stderr
    dataset.write_text(json.dumps({"task_id": 0, "input_ids": [1] * 1000, "output_tokens": 100}) + "\n")
    proc = run("--model", "demo", "--model_path", hf, *latency)
    assert proc.returncode == 1 and "Engine supports a max sequence of 1024" in proc.stderr


@pytest.mark.parametrize("build, tool", [
    ({}, "python-loop"), ({"use_inflight_batching": True}, "trtllm-bench"),
    ({"paged_kv_cache": True}, "trtllm-bench"), ({"paged_kv_cache": True, "use_gpt_attention_plugin": None},
                                                 "python-loop")])
def test_flow_12_is_measured_by_trtllm_bench_where_its_executor_loads_the_engine(build, tool):
    from trtflow.dag import benchmark_tool

    config = copy.deepcopy(BASE)
    config["build"].update(build, backend="trtllm")
    config["trtllm"]["flow"] = "1.2"
    assert benchmark_tool(config) == tool
    config["trtllm"]["flow"] = "0.8"
    assert benchmark_tool(config) == "gptSessionBenchmark"


@pytest.mark.parametrize("flow, build, tool, ranks", [("0.8", {}, "gptSessionBenchmark", 1),
                                                      ("1.2", {"use_inflight_batching": True}, "trtllm-bench", 1),
                                                      ("1.2", {}, "python-loop", 2)])
def test_the_benchmark_job_starts_one_process_for_a_tool_and_every_rank_for_the_loop(flow, build, tool, ranks,
                                                                                      workflow_dir):
    config = copy.deepcopy(BASE)
    config["build"].update(build, backend="trtllm")
    config["trtllm"] = {"flow": flow, "examples_dir": str(DOUBLES / "examples")}
    proc = workflow_dir.run("results/demo/tp2/benchmark.csv", "-n", "-p", config=config)
    command = next(line for line in proc.stdout.splitlines() if "trtflow.stages.benchmark" in line)
    assert f"--gpus 2 --mpi -n {ranks} trtflow.stages.benchmark" in command and f"--tool {tool}" in command


def records(folder: Path, kind: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"{kind}-*.json"))]


@pytest.mark.slow
@pytest.mark.parametrize("flow, version", [("0.8", "0.8.0"), ("1.2", "1.2.1")])
def test_dag_runs_end_to_end_with_trtllm_doubles(flow, version, demo_workflow, tmp_path, monkeypatch):
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("TRTFLOW_DOUBLE_RECORD", str(record))
    monkeypatch.setenv("TRTFLOW_DOUBLE_TRTLLM_VERSION", version)
    monkeypatch.setenv("PYTHONPATH", str(DOUBLES / "site"))
    monkeypatch.setenv("PATH", f"{DOUBLES / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    config = copy.deepcopy(BASE)
    config["build"]["backend"] = "trtllm"
    config["trtllm"] = {"flow": flow, "examples_dir": str(DOUBLES / "examples")}
    config["summarize"].update({"max_ite": 2, "output_len": 4, "compare_hf": False, "rouge1_threshold": 0})
    config["benchmark"] = {"batch_sizes": [1, 16], "input_output_len": [[8, 4]], "warm_up": 0, "num_runs": 1,
                           "duration": 0}
    config["tp"] = [2]
    wf = demo_workflow
    wf.write_config(config)
    targets = [f"results/demo/tp{tp}/{name}" for tp in (2,) for name in ("generate.json", "rouge.json",
                                                                          "accuracy.ok", "benchmark.csv")]
    wf.run(*targets, "results/demo/seed_table.md")

    builds = records(record, "build_py" if flow == "0.8" else "trtllm_build")
    assert len(builds) == 1
    for call in builds:
        assert Path(call["cwd"]).name.startswith("trtflow-build-")  # its own work dir: no shared model.cache
    engines = sorted((wf.path / "results/demo/engines").glob("tp*/*"))
    assert len(engines) == 1
    tp2 = next(e for e in engines if e.parent.name == "tp2")
    expected = (["gpt_float16_tp2_rank0.engine", "gpt_float16_tp2_rank1.engine"] if flow == "0.8"
                else ["rank0.engine", "rank1.engine"])
    assert sorted(p.name for p in tp2.glob("*.engine")) == expected
    provenance = json.loads((tp2 / "PROVENANCE.json").read_text())
    assert provenance["tensorrt_llm"] == version and provenance["flow"] == flow
    def is_tp2(call: dict) -> bool:
        argv = call["argv"]
        if flow == "0.8":
            return argv[argv.index("--world_size") + 1] == "2"
        return argv[argv.index("--checkpoint_dir") + 1].endswith("/tp2")

    call = next(c for c in builds if is_tp2(c))
    args = call["argv"][1:]  # the double sees its own path as argv[0]
    assert provenance["argv"][-len(args):] == args  # what ran is what was recorded
    runners = records(record, "runner")
    assert {(Path(r["engine_dir"]).name, r["rank"]) for r in runners} >= {(tp2.name, 0), (tp2.name, 1)}
    generate = json.loads((wf.path / "results/demo/tp2/generate.json").read_text())
    assert generate["world_size"] == 2 and len(generate["outputs"][0]["output_ids"]) > 0
    rows = (wf.path / "results/demo/tp2/benchmark.csv").read_text().splitlines()
    assert rows[1].split(",")[2] == "trtllm" and "not run: batch size 16" in rows[2]
    # the default flags make no in-flight-batching engine: flow 1.2 runs it in ModelRunner, as run.py does
    runtime = "ModelRunnerCpp" if flow == "0.8" else "ModelRunner"
    assert generate["runtime"] == runtime and {r.get("runtime", runtime) for r in runners} == {runtime}
    calls = records(record, "generate")
    table = (wf.path / "results/demo/seed_table.md").read_text()
    if flow == "0.8":  # measured by the recipe's own tool, on the engine's two MPI ranks
        tool_calls = records(record, "gpt_session_benchmark")
        assert sorted((c["rank"], c["world"]) for c in tool_calls) == [(0, 2), (0, 2), (1, 2), (1, 2)]  # csv, seed
        assert {r.split(",")[-1] for r in rows[1:]} == {"gptSessionBenchmark"}
        assert "| 2 | 1 | 60 | 20 |" in table and "| 50.90 |" in table and table.count("gptSessionBenchmark |") == 1
    else:  # exactly output_len tokens, under SamplingConfig's name
        assert any(g.get("min_length") == 4 for g in calls)
        assert "trtflow's Python loop |" in table
    assert "backend: trtllm (flow " + flow + ")" in table
    ids = token_ids(wf.path / "resources/models/demo/hf")
    served = [g for g in calls if "end_id" in g]
    assert served and {(g["end_id"], g["pad_id"]) for g in served} == {(ids["end_id"], ids["pad_id"])}  # tokenizer's
    assert ids["end_id"] != 50256 and provenance["end_id"] == ids["end_id"]
    assert any(g["rank"] == 1 for g in calls)  # rank 1 took part in every call

    monkeypatch.setenv("TRTFLOW_DOUBLE_TRTLLM_VERSION", version + "9")
    proc = wf.run("results/demo/tp2/generate.json", "--forcerun", "generate", check=False)
    assert proc.returncode != 0
    assert f"built with TensorRT-LLM {version} but {version}9 is running" in proc.stdout + proc.stderr

    # The gate with its real settings: the double's outputs (each prompt's last token repeated) must fail it.
    monkeypatch.setenv("TRTFLOW_DOUBLE_TRTLLM_VERSION", version)
    config["summarize"].update({"compare_hf": True, "rouge1_threshold": 14})
    wf.write_config(config)
    proc = wf.run("results/demo/tp2/accuracy.ok", check=False)
    assert proc.returncode != 0 and "accuracy gate FAILED" in proc.stdout + proc.stderr

    # the TensorRT timing cache is kept beside the engines and read by the next build like it
    kept = sorted((wf.path / "results/demo/trtllm-timing-caches").glob("*.cache"))
    assert len(kept) == 1 and not builds[0]["timing_cache_read"]
    wf.run(str(tp2.relative_to(wf.path)), "--forcerun", "build_engine")
    rebuilt = records(record, "build_py" if flow == "0.8" else "trtllm_build")
    assert len(rebuilt) == 2 and sorted(b["timing_cache_read"] for b in rebuilt) == [False, True]
    assert "below the threshold 14" in proc.stdout + proc.stderr


# ------------------------------------------------------------------ make trtllm-selfcheck


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_llm") is not None,
                    reason="TensorRT-LLM is installed here: its absence cannot be tested")
def test_selfcheck_without_tensorrt_llm_stops_at_once_with_the_provisioning_steps(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trtflow.selfcheck", "--workdir", str(tmp_path / "sc")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Provision TensorRT-LLM first" in proc.stderr
    assert not (tmp_path / "sc").exists()  # stopped before any work


@pytest.mark.slow
def test_selfcheck_writes_one_table_for_trtllm_torch_and_hf(tmp_path, demo_resources):
    """Through the doubles (their tokens mean nothing): the table, versions and command lines are written."""
    import shutil

    work = tmp_path / "sc"
    shutil.copytree(demo_resources, work / "resources")
    env = {**os.environ, "PYTHONPATH": str(DOUBLES / "site"), "TRTFLOW_DOUBLE_TRTLLM_VERSION": "1.2.1",
           "PATH": f"{DOUBLES / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "trtflow.selfcheck", "--workdir", str(work), "--cores", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((work / "selfcheck.json").read_text())
    assert report["versions"]["tensorrt_llm"] == "1.2.1" and report["versions"]["flow"] == "1.2"
    rows = {(r["backend"], r["tp"]): r for r in report["rows"]}
    assert set(rows) == {("trtllm", 1), ("torch", 1)}
    assert rows[("torch", 1)]["greedy_tokens_equal_to_hf"] == "20/20"  # the torch backend matches HF greedy
    assert rows[("trtllm", 1)]["builder_argv"][0].endswith("trtllm-build")
    assert len(report["commands"]) == 2 and "| trtllm | 1 |" in (work / "selfcheck.md").read_text()
