"""The torch backend's TP runtime against Hugging Face, in real multi-process runs on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trtflow.backends.torch.build import build
from trtflow.backends.torch.generator import TorchEngineGenerator
from trtflow.flags import BuildFlags
from trtflow.formats import cmodel
from trtflow.generation import EngineLimitError, EngineMismatchError
from trtflow.hf_reference import HFGenerator
from trtflow.infra.dist import init_distributed
from trtflow.infra.launch import launch_command

HERE = Path(__file__).resolve().parent
PROMPTS = [[5, 17, 300, 2, 999, 41, 7], [8] * 3 + [12, 400, 33, 90, 1, 2, 3, 4, 5, 6, 7, 8, 9], list(range(100, 130))]
BASE_FLAGS = {"backend": "torch", "use_gpt_attention_plugin": "float16", "use_gemm_plugin": None,
              "remove_input_padding": True, "enable_context_fmha": False, "enable_context_fmha_fp32_acc": False,
              "paged_kv_cache": False, "use_inflight_batching": False, "tokens_per_block": 8, "max_batch_size": 8,
              "max_input_len": 64, "max_output_len": 40, "decode": "eager", "use_weight_only": False,
              "weight_only_precision": "int8"}
VARIANTS = {  # name → flag overrides
    "packed-contiguous-sdpa": {},
    "padded-contiguous-sdpa": {"remove_input_padding": False},
    "packed-paged-sdpa": {"paged_kv_cache": True},
    "padded-paged-math": {"remove_input_padding": False, "paged_kv_cache": True, "use_gpt_attention_plugin": None},
    "packed-contiguous-math": {"use_gpt_attention_plugin": None},
    "static-cache": {"decode": "cuda-graph"},  # the CUDA-graph decode path, run uncaptured on CPU
    "static-cache-gemv": {"decode": "compile-gemv"},  # its multiply-and-sum matmuls
}


# The tiny test checkpoints have no tokenizer: their end id is GPT2Config's own eos_token_id, outside their
# 1,000-token vocabulary, so greedy decoding never stops early and lengths stay comparable with HF's.
TINY_TOKEN_IDS = {"end_id": 50256, "pad_id": 50256}


def engine_flags(**overrides) -> BuildFlags:
    return BuildFlags.from_config({**BASE_FLAGS, **overrides}, "float32")


@pytest.fixture(scope="module")
def hf_reference(tiny_gpt2):
    hf = HFGenerator(tiny_gpt2, torch.device("cpu"), TINY_TOKEN_IDS, "float32")
    return {
        "logits": hf.forward_logits(PROMPTS[0]),
        "tokens": [hf.generate([p], 32, ignore_eos=True).output_ids[0] for p in PROMPTS],
    }


def build_engines(hf_dir: Path, root: Path, tp: int) -> list[str]:
    source = cmodel.convert(hf_dir, root / "c", tp, "float32", progress=False)
    return [str(build(source, root / name, engine_flags(**over), "0" * 10, TINY_TOKEN_IDS))
            for name, over in VARIANTS.items()]


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_tp_runtime_matches_hf(tiny_gpt2, hf_reference, tmp_path, tp):
    engines = build_engines(tiny_gpt2, tmp_path, tp)
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    out = tmp_path / "out.json"
    cmd = launch_command(tp, str(HERE / "tp_check.py"), [str(out), str(tmp_path / "prompts.json"), *engines])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())
    for engine_dir, result in results.items():
        name = Path(engine_dir).name
        logits = torch.tensor(result["logits"])
        diff = (logits - hf_reference["logits"]).abs().max().item()
        assert diff < 1e-4, f"{name} tp{tp}: max |logit − HF| = {diff}"
        assert result["single"] == hf_reference["tokens"], f"{name} tp{tp}: greedy tokens differ from HF"
        assert result["batch"] == hf_reference["tokens"], f"{name} tp{tp}: batched tokens differ from one-at-a-time"


def test_variants_really_differ_in_configuration(tiny_gpt2, tmp_path):
    engines = build_engines(tiny_gpt2, tmp_path, 1)
    runtimes = {BuildFlags.from_json(json.loads((Path(e) / "config.json").read_text())["build"]).runtime()
                for e in engines}
    assert len(runtimes) == len(VARIANTS)


def test_engine_limits_are_enforced(tiny_gpt2, tmp_path):
    engine = TorchEngineGenerator(build_engines(tiny_gpt2, tmp_path, 1)[0], init_distributed())
    with pytest.raises(EngineLimitError, match="max_batch_size 8"):
        engine.generate([[1, 2]] * 9, 4)
    with pytest.raises(EngineLimitError, match="max_input_len 64"):
        engine.generate([[1] * 65], 4)
    with pytest.raises(EngineLimitError, match="max_output_len 40"):
        engine.generate([[1, 2]], 41)
    with pytest.raises(EngineLimitError, match="beam search"):
        from trtflow.generation import Sampling

        engine.generate([[1, 2]], 4, Sampling(num_beams=2))


def test_world_size_mismatch_is_refused(tiny_gpt2, tmp_path):
    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 2, "float32", progress=False)
    engine_dir = build(source, tmp_path / "e", engine_flags(), "0" * 10, TINY_TOKEN_IDS)
    with pytest.raises(EngineMismatchError, match="built for world size 2 but 1 .*by hand, launch with -n 2; in the "
                       "workflow the folder holds another tp's engine: delete .* and rerun"):
        TorchEngineGenerator(engine_dir, init_distributed())


def test_sampling_is_seeded_and_stops_at_end_id(tiny_gpt2, tmp_path):
    from trtflow.generation import Sampling

    engine = TorchEngineGenerator(build_engines(tiny_gpt2, tmp_path, 1)[0], init_distributed())
    sampling = Sampling(top_k=50, top_p=0.9, temperature=0.8, random_seed=3)
    first = engine.generate(PROMPTS, 20, sampling, ignore_eos=True).output_ids
    assert engine.generate(PROMPTS, 20, sampling, ignore_eos=True).output_ids == first
    greedy = engine.generate([PROMPTS[0]], 20, ignore_eos=True).output_ids[0]
    stop_at = greedy[5]
    stopped = engine.generate([PROMPTS[0]], 20, end_id=stop_at).output_ids[0]
    assert stopped == greedy[: greedy.index(stop_at)]


@pytest.mark.parametrize("n, root, cores, expected", [
    (1, False, 2, ["PY", "-m", "m"]),
    (2, True, 2, ["MPIRUN", "-np", "2", "--allow-run-as-root", "PY", "-m", "m"]),
    (4, False, 2, ["MPIRUN", "-np", "4", "--oversubscribe", "PY", "-m", "m"]),
])
def test_launch_command(n, root, cores, expected, monkeypatch):
    import trtflow.infra.launch as launch

    monkeypatch.setattr(launch, "find_program", lambda program: "MPIRUN" if program == "mpirun" else None)
    monkeypatch.setattr(sys, "executable", "PY")
    assert launch.launch_command(n, "m", [], cpu_count=cores, is_root=root, env={}) == expected


def test_launch_uses_srun_inside_a_slurm_job(monkeypatch):
    import trtflow.infra.launch as launch

    monkeypatch.setattr(launch, "find_program", lambda program: program.upper())
    monkeypatch.setattr(sys, "executable", "PY")
    assert launch.launch_command(2, "m", ["--a"], env={"SLURM_JOB_ID": "7"}) == ["SRUN", "-n", "2", "PY", "-m", "m", "--a"]
    assert launch.launch_command(1, "m", [], env={"SLURM_JOB_ID": "7"}) == ["PY", "-m", "m"]


def test_launch_falls_back_to_torchrun_then_errors(monkeypatch):
    import trtflow.infra.launch as launch

    monkeypatch.setattr(launch, "find_program", lambda program: "TORCHRUN" if program == "torchrun" else None)
    assert launch.launch_command(2, "m", ["--x"], env={})[:3] == ["TORCHRUN", "--standalone", "--nproc-per-node=2"]
    monkeypatch.setattr(launch, "find_program", lambda program: None)
    with pytest.raises(launch.LauncherError, match="neither mpirun nor torchrun"):
        launch.launch_command(2, "m", [], env={})



def test_tensorrt_llm_ranks_start_from_mpi_only(monkeypatch):
    """--mpi (the trtllm backend's jobs): srun in a Slurm job or mpirun, never torchrun, whose RANK TensorRT-LLM
    does not read; without MPI one line says what to install before any rank starts."""
    import trtflow.infra.launch as launch

    monkeypatch.setattr(sys, "executable", "PY")
    monkeypatch.setattr(launch, "find_program", lambda program: "TORCHRUN" if program == "torchrun" else None)
    with pytest.raises(launch.LauncherError, match=r"2 ranks of a TensorRT-LLM engine need MPI.*neither mpirun nor "
                                                   r"a Slurm job is here; fix: install MPI"):
        launch.launch_command(2, "m", [], env={}, mpi=True)
    assert launch.launch_command(1, "m", [], env={}, mpi=True) == ["PY", "-m", "m"]  # one rank: no launcher
    monkeypatch.setattr(launch, "find_program", lambda program: program.upper())
    assert launch.launch_command(2, "m", [], env={}, mpi=True, is_root=False)[:3] == ["MPIRUN", "-np", "2"]
    assert launch.launch_command(2, "m", [], env={"SLURM_JOB_ID": "7"}, mpi=True)[:3] == ["SRUN", "-n", "2"]
    with pytest.raises(launch.LauncherError, match="--launcher torchrun was given"):
        launch.launch_command(2, "m", [], launcher="torchrun", env={}, mpi=True)


def test_a_trtllm_tp_above_1_is_refused_while_planning_where_no_mpi_can_start_it(monkeypatch):
    import trtflow.infra.launch as launch
    from trtflow.config import ConfigError
    from trtflow.dag import check_mpi_here

    monkeypatch.setattr(launch, "find_program", lambda program: None)
    with pytest.raises(ConfigError, match="tp 2 with build.backend trtllm needs 2 MPI ranks"):
        check_mpi_here("trtllm", 2, local=True, env={})
    check_mpi_here("trtllm", 1, local=True, env={})
    check_mpi_here("torch", 2, local=True, env={})  # the torch backend's ranks come from any launcher
    check_mpi_here("trtllm", 2, local=False, env={})  # a cluster's jobs start their ranks with srun


def test_a_compiled_engine_is_refused_off_the_toolchain_it_was_compiled_for(tiny_gpt2, tmp_path, monkeypatch):
    """The decode step compiled by the engine rule runs only on the GPU architecture, torch, Triton and CUDA it
    was compiled with; elsewhere (here: this CPU) the engine is refused with the instruction to rebuild."""

    from trtflow.backends.torch import compiled
    from trtflow.formats.artifact import write_manifest
    from trtflow.generation import EngineMismatchError

    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float32", progress=False)
    engine_dir = build(source, tmp_path / "e", engine_flags(decode="compile-gemv"), "0" * 10,
                       TINY_TOKEN_IDS)
    config = json.loads((engine_dir / "config.json").read_text())
    assert "compiled" not in config  # nothing is compiled without a GPU
    h100 = {"torch": torch.__version__, "triton": "3.9.0", "cuda": "12.8", "sm": "90"}
    config["compiled"] = {"file": compiled.ARTIFACT, "batch_sizes": [1], **h100}
    (engine_dir / "compiled").mkdir()
    (engine_dir / compiled.ARTIFACT).write_bytes(b"artifacts")
    (engine_dir / "config.json").write_text(json.dumps(config))
    write_manifest(engine_dir, {"kind": "engine"})
    with pytest.raises(EngineMismatchError, match=r"compiled for .*sm 90, but this machine has .*sm none.*rebuilds it here"):
        TorchEngineGenerator(engine_dir, init_distributed())
    monkeypatch.setattr(compiled, "toolchain", lambda: {**h100, "torch": "2.99.0"})
    with pytest.raises(EngineMismatchError, match=r"compiled for torch \S+, but this machine has torch 2\.99\.0"):
        TorchEngineGenerator(engine_dir, init_distributed())
    monkeypatch.setattr(compiled, "toolchain", lambda: h100)
    loaded = []
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", loaded.append)
    TorchEngineGenerator(engine_dir, init_distributed())  # the same toolchain: loaded, not refused
    assert loaded == [b"artifacts"]


@pytest.mark.parametrize("variant", ["packed-contiguous-sdpa", "packed-contiguous-math"])
def test_packed_prompts_of_one_length_attend_as_one_batch_within_each_prompt(tiny_gpt2, tmp_path, variant):
    """Prompts all of one length take model._attend_prompts' batched call: every prompt's logits are those it has
    alone (no attention across prompts), as with prompts of different lengths."""
    source = cmodel.convert(tiny_gpt2, tmp_path / "c", 1, "float32", progress=False)
    engine = TorchEngineGenerator(build(source, tmp_path / "e", engine_flags(**VARIANTS[variant]), "0" * 10,
                                        TINY_TOKEN_IDS), init_distributed())
    prompts = [PROMPTS[0], [9, 8, 7, 6, 5, 4, 3], [5, 17, 300, 2, 999, 41, 8]]
    together = engine.model.context([torch.tensor(p) for p in prompts], engine._cache([len(p) for p in prompts], 1),
                                    True, all_logits=True)
    for prompt, logits in zip(prompts, together, strict=True):
        alone = engine.forward_logits(prompt)
        assert (logits - alone).abs().max().item() < 1e-5
