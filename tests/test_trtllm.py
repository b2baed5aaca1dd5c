"""The trtllm backend at its boundary: exact command lines, provisioning errors, and the whole DAG for both
flows with the TEST DOUBLES of tests/doubles standing in for TensorRT-LLM (which no machine here has)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from trtflow.backends.trtllm import build as trtllm_build_stage
from trtflow.backends.trtllm.commands import build_py, trtllm_build
from trtflow.flags import BuildFlags

DOUBLES = Path(__file__).resolve().parent / "doubles"
BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
PY, EXAMPLES, CMODEL, OUT, WORK = "PY", Path("/ex"), Path("/c/2-gpu"), Path("/out"), Path("/work")


def flags(**changes) -> dict:
    return BuildFlags.from_config({**BASE["build"], **changes}, "float16")


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
                    "--max_input_len", "924", "--max_seq_len", "1024", "--output_timing_cache", "/work/model.cache",
                    "--workers", "1"]),
    (dict(use_gpt_attention_plugin=None, remove_input_padding=False, paged_kv_cache=True, tokens_per_block=32,
          use_gemm_plugin="float16"), 2, 2,
     ["--gpt_attention_plugin", "disable", "--gemm_plugin", "float16", "--remove_input_padding", "disable",
      "--context_fmha", "disable", "--kv_cache_type", "paged", "--tokens_per_block", "32", "--max_batch_size", "8",
      "--max_input_len", "924", "--max_seq_len", "1024", "--output_timing_cache", "/work/model.cache",
      "--workers", "2"]),
    (dict(enable_context_fmha_fp32_acc=True, max_input_len=512, max_output_len=200), 4, 1,
     ["--gpt_attention_plugin", "float16", "--gemm_plugin", "disable", "--remove_input_padding", "enable",
      "--context_fmha", "enable", "--kv_cache_type", "continuous", "--max_batch_size", "8", "--max_input_len", "512",
      "--max_seq_len", "712", "--output_timing_cache", "/work/model.cache", "--workers", "1"]),
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
        trtllm_build_stage.build(tmp_path, tmp_path / "e", flags(), "0" * 10, {"flow": "0.8"})


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


# ------------------------------------------------------------------ the whole DAG with the doubles


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
    wf = demo_workflow
    wf.write_config(config)
    targets = [f"results/demo/tp{tp}/{name}" for tp in (1, 2) for name in ("generate.json", "rouge.json",
                                                                          "accuracy.ok", "benchmark.csv")]
    wf.run(*targets)

    builds = records(record, "build_py" if flow == "0.8" else "trtllm_build")
    assert len(builds) == 2
    for call in builds:
        assert Path(call["cwd"]).name.startswith("trtflow-build-")  # its own work dir: no shared model.cache
    engines = sorted((wf.path / "results/demo/engines").glob("tp*/*"))
    assert len(engines) == 2
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
    assert any(g["min_length"] == 4 for g in records(record, "generate"))  # benchmark: exactly output_len tokens

    monkeypatch.setenv("TRTFLOW_DOUBLE_TRTLLM_VERSION", version + "9")
    proc = wf.run("results/demo/tp1/generate.json", "--forcerun", "generate", check=False)
    assert proc.returncode != 0
    assert f"built with TensorRT-LLM {version} but {version}9 is running" in proc.stdout + proc.stderr

    # The gate with its real settings: the double's outputs (each prompt's last token repeated) must fail it.
    monkeypatch.setenv("TRTFLOW_DOUBLE_TRTLLM_VERSION", version)
    config["summarize"].update({"compare_hf": True, "rouge1_threshold": 14})
    wf.write_config(config)
    proc = wf.run("results/demo/tp1/accuracy.ok", check=False)
    assert proc.returncode != 0 and "accuracy gate FAILED" in proc.stdout + proc.stderr
    assert "below the threshold 14" in proc.stdout + proc.stderr
