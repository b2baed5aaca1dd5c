import sys
from pathlib import Path

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))

from trtflow import config as tfc  # noqa: E402
from trtflow.workflow_support import (  # noqa: E402
    benchmark_args,
    dataset_file,
    generate_args,
    hub_args,
    known_model_config,
    model_regex,
    names_with_source,
    prepare_job_environment,
    report_inputs,
    report_runs,
    summarize_args,
)

try:
    tfc.validate(config, SCRIPTS.parent / "schemas" / "config.schema.yaml")
    for _name in config["models"]:
        _known = known_model_config(config, _name)
        if _known:
            tfc.check_model_fits(config, _name, *_known)
except tfc.ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None

# Jobs run `python -m trtflow.<stage>`: the Python (and mpirun) beside the one running Snakemake come
# first on PATH, and the package is importable without installing it.
prepare_job_environment(SCRIPTS)


wildcard_constraints:
    model=model_regex(config["models"]),
    tp=r"[1-9]\d*",
    build_key=r"[0-9a-f]{10}",


TRTLLM = config["build"]["backend"] == "trtllm"


def get_hf_dir(wildcards):
    return f"resources/models/{wildcards.model}/hf"


def get_build_key(wildcards):
    return tfc.build_key(config, wildcards.model, int(wildcards.tp))


def get_engine_dir(wildcards):
    return f"results/{wildcards.model}/engines/tp{wildcards.tp}/{get_build_key(wildcards)}"


def get_engine_source(wildcards):
    if TRTLLM and config["trtllm"]["flow"] == "1.2":
        return f"results/{wildcards.model}/trtllm-ckpt/tp{wildcards.tp}"
    return f"results/{wildcards.model}/c-model/{wildcards.tp}-gpu"


def get_build_flags(wildcards):
    """The flags of the current config; refuses to rebuild an engine folder under a stale key."""
    current = get_build_key(wildcards)
    if wildcards.build_key != current:
        raise WorkflowError(
            f"engine key {wildcards.build_key} does not match the current config (key {current}); "
            f"request results/{wildcards.model}/tp{wildcards.tp}/… targets, which follow the config"
        )
    return tfc.canonical(
        tfc.normalise_build(config["build"], config["convert"]["storage_type"])
    )


# trtllm rules run in NVIDIA's TensorRT-LLM v0.8.0 image under `--sdm apptainer --apptainer-args "--nv"`;
# the torch backend needs no container.
TRTLLM_CONTAINER = (
    "docker://nvcr.io/nvidia/tritonserver:24.02-trtllm-python-py3"
    if TRTLLM and config["trtllm"]["flow"] == "0.8"
    else None
)


# The software stack of the rules that run an engine: the torch env, or the TensorRT-LLM flow's.
ENGINE_ENV = (
    f"../../envs/trtllm-{config['trtllm']['flow']}.yaml"
    if TRTLLM
    else "../../envs/torch.yaml"
)


def get_build_gpus(wildcards):
    """TensorRT builds need the GPUs they build for; the torch backend's build is a CPU re-layout."""
    return int(wildcards.tp) if TRTLLM else 0


def get_dataset_file(wildcards):
    return dataset_file(config["summarize"]["dataset"])


# GPU jobs: gpu = tp; tp > 1 also tasks = tp, one task per GPU and an MPI launcher; tp 1 none of
# these (the slurm executor rejects MPI jobs with one task). Returning None unsets a resource.
def gpu_count(wildcards):
    return int(wildcards.tp)


def rank_tasks(wildcards):
    return int(wildcards.tp) if int(wildcards.tp) > 1 else None


def tasks_per_gpu(wildcards):
    return 1 if int(wildcards.tp) > 1 else None


def mpi_launcher(wildcards):
    return "srun" if int(wildcards.tp) > 1 else None


def get_final_output():
    targets = []
    for model in config["targets"]:
        for tp in config["tp"]:
            for name in (
                "generate.json",
                "rouge.json",
                "accuracy.ok",
                "benchmark.csv",
                "benchmark.png",
            ):
                targets.append(f"results/{model}/tp{tp}/{name}")
    targets.append("results/report.html")
    return targets
