"""The machine the workflow plans on: `decode: auto` resolved from the jobs' GPU architecture (a faked nvidia-smi
stands in for each architecture), and the tp degrees a GPU pool can run, left out or refused before any job."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from conftest import ROOT
from trtflow.config import ConfigError, validate
from trtflow.dag import check_runs_here, settle_machine
from trtflow.flags import build_flags, build_key, decode_of
from trtflow.infra.machine import gpu_arch, local_gpu_count, probe_arch

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())

# `nvidia-smi -L` and `nvidia-smi --query-gpu=index,compute_cap --format=csv,noheader` as the driver prints them
FAKE_NVIDIA_SMI = """#!/bin/sh
case "$1" in
  -L) i=0; for cap in $FAKE_CAPS; do
        echo "GPU $i: NVIDIA Fake $cap (UUID: GPU-0000000$i-1111-2222-3333-444444444444)"; i=$((i+1)); done ;;
  --query-gpu=index,compute_cap) i=0; for cap in $FAKE_CAPS; do echo "$i, $cap"; i=$((i+1)); done ;;
  *) echo "fake nvidia-smi: unexpected $*" >&2; exit 2 ;;
esac
"""


def config_with(arch: str, **build) -> dict:
    config = copy.deepcopy(BASE)
    config["build"].update(build)
    config = validate(config)
    config["gpu_arch"] = arch
    return config


@pytest.mark.parametrize("arch, storage, build, expected", [
    ("none", "float16", {}, ("eager", "eager")),  # a CPU: as before `auto`
    ("9.0", "float16", {}, ("kernels", "cuda-graph")),
    ("9.0", "bfloat16", {}, ("kernels", "cuda-graph")),
    ("9.0", "float16", {"use_weight_only": True}, ("kernels", "cuda-graph")),
    ("9.0", "float32", {}, ("cuda-graph", "cuda-graph")),  # the kernels take fp16/bf16 only
    ("8.0", "float16", {}, ("cuda-graph", "cuda-graph")),  # kernels not verified on this architecture
    ("10.0", "float16", {}, ("cuda-graph", "cuda-graph")),
    ("9.0", "float16", {"paged_kv_cache": True}, ("eager", "eager")),  # a paged cache always decodes eagerly
    ("9.0", "float16", {"decode": "compile"}, ("compile", "compile")),  # a named path wins
    ("none", "float16", {"decode": "kernels"}, ("kernels", "kernels")),
])
def test_auto_takes_the_fastest_verified_path_for_the_gpu_dtype_and_tp(arch, storage, build, expected):
    config = config_with(arch, **build)
    config["convert"]["storage_type"] = storage
    assert (decode_of(config, 1), decode_of(config, 2)) == expected
    assert build_flags(config, 1).decode == expected[0]


def test_auto_is_eager_for_the_trtllm_backend_whose_setting_it_is_not():
    config = copy.deepcopy(BASE)
    config["build"].update(backend="trtllm")
    config = validate(config)
    config["gpu_arch"] = "9.0"
    assert decode_of(config, 1) == "eager" and not build_flags(config, 1).cuda_graphs


def test_the_build_key_says_what_auto_resolved_to():
    """On a CPU `auto` names the engines explicit `eager` named (the CPU plan is unchanged); on an H200 it names
    the kernels' engine at tp 1 and the CUDA graph's at tp 2, so an engine resolved on a CPU is not reused there."""
    def key(arch, tp, **build):
        return build_key(config_with(arch, **build), "demo", tp)

    assert key("none", 1) == key("none", 1, decode="eager") == "394b4bb334"  # tests/test_keys.py OLDER_KEYS
    assert key("9.0", 1) == key("none", 1, decode="kernels") != key("none", 1)
    assert key("9.0", 2) == key("none", 2, decode="cuda-graph") != key("none", 2)


@pytest.fixture
def fake_gpus(tmp_path):
    """A PATH with a fake nvidia-smi whose GPUs have the compute capabilities in `caps` (none: no driver)."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)

    def env(*caps: str, **extra: str) -> dict:
        base = {k: v for k, v in os.environ.items()
                if k not in ("CUDA_VISIBLE_DEVICES", "TRTFLOW_GPU_POOL", "TRTFLOW_GPU_ARCH")}
        path = f"{bin_dir}:{base['PATH']}" if caps else base["PATH"]
        return {**base, "PATH": path, "FAKE_CAPS": " ".join(caps), **extra}

    return env


def test_the_probe_reads_the_architecture_from_nvidia_smi(fake_gpus):
    assert probe_arch(fake_gpus("9.0")) == "9.0"
    assert probe_arch(fake_gpus("9.0", "8.0")) == "8.0"  # the lowest: every job must run on it
    assert probe_arch(fake_gpus("9.0", "8.0", CUDA_VISIBLE_DEVICES="0")) == "9.0"
    assert probe_arch(fake_gpus()) == "none"  # no nvidia-smi on PATH
    assert gpu_arch("auto", fake_gpus("9.0", TRTFLOW_GPU_ARCH="8.9")) == "8.9"  # what the planner exported
    assert gpu_arch("8.0", fake_gpus("9.0")) == "8.0"  # the config's, under a cluster
    assert local_gpu_count(fake_gpus("9.0", "9.0")) == 2
    assert local_gpu_count(fake_gpus("9.0", "9.0"), resources_gpu=1) == 1
    assert local_gpu_count(fake_gpus()) is None


def test_a_pool_too_small_leaves_out_the_listed_tp_and_refuses_a_named_one():
    config = config_with("9.0")
    lines = settle_machine(config, 1, tp_named=False, env={"TRTFLOW_GPU_ARCH": "9.0"})
    assert config["tp"] == [1]
    assert lines[0].startswith("trtflow: tp 2 left out: this machine's pool has 1 GPU(s)")
    assert lines[1] == "trtflow: decode auto: kernels at tp 1 (GPU sm 9.0; build.decode names one)"
    with pytest.raises(ConfigError, match=r"tp: 2 needs more GPUs than this machine's pool has \(1"):
        settle_machine(config_with("9.0"), 1, tp_named=True, env={})
    unchanged = config_with("none")
    settle_machine(unchanged, None, tp_named=True, env={"PATH": ""})  # no pool: every degree, on gloo
    assert unchanged["tp"] == [1, 2]
    check_runs_here(2, None)
    with pytest.raises(ConfigError, match="tp 2 needs 2 GPUs but this machine's pool has 1"):
        check_runs_here(2, 1)


@pytest.mark.parametrize("arch, asked, device, said", [
    ("9.0", None, "cuda", True),  # auto, the default: the GPU where the jobs have one
    ("8.0", "auto", "cuda", True),
    ("none", None, None, False),  # a CPU: the recipe as before devices were named, so the same model key
    ("9.0", "cpu", None, False),  # asked for by name: the CPU's bytes on a GPU box
    ("9.0", "cuda", "cuda", True),
])
def test_the_demo_model_trains_on_the_gpu_where_the_jobs_have_one(arch, asked, device, said):
    config = config_with(arch)
    if asked:
        config["models"]["demo"]["recipe"] = {"steps": 20, "device": asked}
    before = flags_model_key(config_with("none"))
    lines = settle_machine(config, None, tp_named=False, env={})
    assert config["models"]["demo"]["recipe"].get("device") == device
    assert ("trtflow: model demo trains on the GPU (recipe.device cpu: the CPU's bytes)" in lines) == said
    if not asked:
        assert (flags_model_key(config) == before) == (device is None)


def test_training_on_cuda_without_a_gpu_is_refused_before_any_job():
    config = config_with("none")
    config["models"]["demo"]["recipe"] = {"device": "cuda"}
    with pytest.raises(ConfigError, match="models.demo.recipe.device is cuda, but the jobs have no GPU"):
        settle_machine(config, None, tp_named=False, env={})


def flags_model_key(config: dict) -> str:
    from trtflow.flags import convert_key

    return convert_key(config, "demo")


def test_a_one_gpu_box_plans_tp_1_with_the_kernels_and_refuses_tp_2_before_any_job(workflow_dir, fake_gpus):
    """Real snakemake on the default config: one faked H200 plans tp 1 only (the kernels' engine), says what was
    left out; tp 2 named on the command line, or a tp 2 file asked for, is refused while planning."""
    one_h200 = fake_gpus("9.0")
    planned = workflow_dir.run("-n", check=False, env=one_h200)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "trtflow: tp 2 left out: this machine's pool has 1 GPU(s)" in planned.stderr
    assert "trtflow: decode auto: kernels at tp 1 (GPU sm 9.0" in planned.stderr
    assert "results/demo/tp1/rouge.json" in planned.stdout and "results/demo/tp2" not in planned.stdout
    assert '"torch_compile":"triton"' in planned.stdout  # decode: kernels, in the engine's flags and key
    assert "trtflow: model demo trains on the GPU" in planned.stderr
    training = planned.stdout.split("rule demo_model:")[1].split("\n\n")[0]
    assert "gpu=1" in training, training  # the training job holds the GPU

    refused = workflow_dir.run("-n", "results/demo/tp2/generate.json", "--config", "tp=[2]", check=False,
                               env={**os.environ, "TRTFLOW_GPU_POOL": "1"})
    assert refused.returncode != 0
    assert "tp: 2 needs more GPUs than this machine's pool has (1" in refused.stdout + refused.stderr
    assert "rule " not in refused.stdout  # no job planned
    asked = workflow_dir.run("-n", "results/demo/tp2/generate.json", check=False, env=one_h200)
    assert asked.returncode != 0 and "tp 2 needs 2 GPUs but this machine's pool has 1" in asked.stdout + asked.stderr


def test_a_cpu_machine_plans_every_tp_eagerly_as_before(workflow_dir, fake_gpus):
    planned = workflow_dir.run("-n", check=False, env=fake_gpus())
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "left out" not in planned.stderr and "trains on the GPU" not in planned.stderr
    assert "gpu=1" not in planned.stdout.split("rule demo_model:")[1].split("\n\n")[0]
    assert "trtflow: decode auto: eager at tp 1, eager at tp 2 (no GPU here" in planned.stderr
    for tp in (1, 2):
        assert f"results/demo/engines/tp{tp}/{build_key(config_with('none'), 'demo', tp)}" in planned.stdout


def test_a_training_job_told_cuda_where_torch_sees_no_gpu_says_so_in_one_line():
    import torch
    from trtflow.demo_recipe import DemoRecipe
    from trtflow.stages.demo_model import training_device

    said = []
    assert training_device(DemoRecipe(), said.append).type == "cpu" and said == ["training on the CPU, 2 threads"]
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for a job that sees none")
    with pytest.raises(RuntimeError, match="the recipe trains on cuda, but torch sees no GPU in this job; fix:"):
        training_device(DemoRecipe(device="cuda"))
