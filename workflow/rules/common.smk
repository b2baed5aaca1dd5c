import json
import os
import shlex
import sys
from pathlib import Path

SCRIPTS = Path(workflow.basedir) / "scripts"
sys.path.insert(0, str(SCRIPTS))

from trtflow import config as tfc  # noqa: E402
from trtflow import flags as tff  # noqa: E402
from trtflow import paths  # noqa: E402
from trtflow.infra.gpus import GpuPoolError  # noqa: E402
from trtflow.infra.machine import ARCH_ENV, local_gpu_count  # noqa: E402
from trtflow.dag import (  # noqa: E402
    benchmark_args,
    benchmark_tool,
    check_config,
    check_mpi_here,
    check_runs_here,
    compile_batch_sizes,
    dataset_file,
    final_outputs,
    generate_args,
    hub_args,
    model_regex,
    names_with_source,
    owner_of_build_key,
    owner_of_convert_key,
    prepare_job_environment,
    run_config,
    settle_machine,
    source_stamp,
    unwritable_folder,
    report_inputs,
    report_runs,
    report_seed_tables,
    report_summary,
    seed_benchmark_args,
    seed_table_context,
    seed_table_inputs,
    seed_table_runs,
    unknown_target_message,
    unknown_target_regex,
    summarize_args,
    variant_regex,
    variant_report_inputs,
    variant_runs,
)


def _local_gpus():
    """The GPUs jobs may hold on this machine (None: no pool, or jobs sent to a cluster: every tp is planned)."""
    if not workflow.local_exec or workflow.remote_exec:
        return None
    gpu = workflow.global_resources.get("gpu")
    try:
        return local_gpu_count(resources_gpu=gpu.value if gpu is not None and isinstance(gpu.value, int) else None)
    except GpuPoolError as err:
        raise WorkflowError(str(err)) from None


LOCAL_GPUS = _local_gpus()
LOCAL_RUN = workflow.local_exec and not workflow.remote_exec  # jobs start on this machine
try:
    check_config(config, SCRIPTS.parent / "schemas" / "config.schema.yaml")
    # tp named by --config or --configfile (not the workflow's own config file) is refused, not left out
    for _line in settle_machine(config, LOCAL_GPUS, "tp" in workflow.config_settings.overwrite_config):
        print(_line, file=sys.stderr)
except tfc.ConfigError as err:
    raise WorkflowError(f"invalid configuration: {err}") from None
# every process after the planner (jobs; a Snakefile re-read inside a cluster job) resolves decode: auto alike
os.environ[ARCH_ENV] = config["gpu_arch"]

if _unwritable := unwritable_folder(Path.cwd()):
    raise WorkflowError(_unwritable)

# Jobs run `python -m trtflow.stages.<stage>`: the Python (and mpirun) beside the one running Snakemake come
# first on PATH, and the package is importable without installing it.
prepare_job_environment(SCRIPTS)


wildcard_constraints:
    model=model_regex(config["models"]),
    tp=r"[1-9]\d*",
    build_key=r"[0-9a-f]{10}",
    convert_key=r"[0-9a-f]{10}",
    hf_key=r"[0-9a-f]{10}",
    variant=variant_regex(config),


TRTLLM = config["build"]["backend"] == "trtllm"
FLOW = config["trtllm"]["flow"]


def launcher(ranks):
    """The one command every job that runs an engine (or builds one on GPUs) starts through: it holds the
    job's `gpu` resources and starts `ranks(wildcards)` ranks of the stage module that follows."""

    def command(wildcards, resources):
        mpi = " --mpi" if run_config(config, wildcards)["build"]["backend"] == "trtllm" else ""
        return f"python -m trtflow.infra.launch --gpus {resources.gpu}{mpi} -n {ranks(wildcards)}"

    return command


def get_generate_args(wildcards):
    """A function, not a string: Snakemake fills {…} in a string param, and a prompt may hold braces."""
    return generate_args(config["generate"])


def get_hf_dir(wildcards):
    return paths.HF_DIR.format(model=wildcards.model)


def get_run_config(wildcards):
    """The config a run file is made with: its variant's where the job has a `variant` wildcard."""
    return run_config(config, wildcards)


def get_build_key(wildcards):
    try:
        check_runs_here(int(wildcards.tp), LOCAL_GPUS)  # every job that runs or builds an engine asks for its key
        check_mpi_here(get_run_config(wildcards)["build"]["backend"], int(wildcards.tp), LOCAL_RUN)
    except tfc.ConfigError as err:
        raise WorkflowError(str(err)) from None
    return tff.build_key(get_run_config(wildcards), wildcards.model, int(wildcards.tp))


def get_engine_dir(wildcards):
    return paths.ENGINE.format(model=wildcards.model, tp=wildcards.tp, build_key=get_build_key(wildcards))


def _stale_key(wildcards, name):
    return WorkflowError(
        f"{name} {getattr(wildcards, name)} is not a key of the current config (or of its variants); "
        f"request {paths.RUN.format(model=wildcards.model, tp=wildcards.tp)}/… (or …/variants/<name>/…) "
        "targets, which follow the config"
    )


def engine_config(wildcards):
    """The config (base or variant) whose engine folder this is: variants with equal flags share one; an
    engine folder under a key no config names now is refused, never rebuilt with other flags."""
    owner = owner_of_build_key(config, wildcards.model, int(wildcards.tp), wildcards.build_key)
    if owner is None:
        raise _stale_key(wildcards, "build_key")
    return owner


def converted_config(wildcards):
    """Likewise for a converted folder (variants that differ only in build flags share one)."""
    owner = owner_of_convert_key(config, wildcards.model, wildcards.convert_key)
    if owner is None:
        raise _stale_key(wildcards, "convert_key")
    return owner


def get_engine_source(wildcards):
    owner = engine_config(wildcards)
    template = paths.TRTLLM_CKPT if TRTLLM and FLOW == "1.2" else paths.CMODEL
    return template.format(model=wildcards.model, tp=wildcards.tp, convert_key=tff.convert_key(owner, wildcards.model))


def get_build_flags(wildcards):
    return tff.build_flags(engine_config(wildcards), int(wildcards.tp)).canonical()


def get_hf_summary(wildcards):
    """The model's HF summary where summarize compares against HF; nothing otherwise."""
    if not config["summarize"]["compare_hf"]:
        return []
    return paths.HF_SUMMARY.format(model=wildcards.model, hf_key=tff.hf_summary_key(config, wildcards.model))


def hf_summary_arg(wildcards, input):
    return f"--hf-summary {input.hf_summary}" if input.hf_summary else ""


def get_hf_summary_args(wildcards):
    """The summarize settings; refuses to remake an HF summary under a stale key."""
    if wildcards.hf_key != tff.hf_summary_key(config, wildcards.model):
        raise _stale_key(wildcards, "hf_key")
    return summarize_args(config["summarize"])


def get_storage_type(wildcards):
    """The dtype of the converted folder asked for; refuses to reconvert a folder under a stale key."""
    return converted_config(wildcards)["convert"]["storage_type"]


def get_checkpoint_quantization(wildcards):
    """A 1.2 checkpoint's weight-only precision (a convert_checkpoint.py setting in 1.x), as converter flags."""
    precision = tff.checkpoint_quantization(converted_config(wildcards))
    return f"--use_weight_only --weight_only_precision {precision}" if precision else ""


# trtllm rules run in NVIDIA's TensorRT-LLM v0.8.0 image under `--sdm apptainer --apptainer-args "--nv"`;
# the torch backend needs no container.
TRTLLM_CONTAINER = "docker://nvcr.io/nvidia/tritonserver:24.02-trtllm-python-py3" if TRTLLM and FLOW == "0.8" else None

# The software stack of the rules that run an engine: the torch env, or the TensorRT-LLM flow's.
ENGINE_ENV = f"../envs/trtllm-{FLOW}.yaml" if TRTLLM else "../envs/torch.yaml"

# The trtllm settings reach the build only for the trtllm backend, so editing them never touches
# a torch engine.
TRTLLM_SETTINGS = tff.canonical(config["trtllm"]) if TRTLLM else "{}"
# ... and of them the build's alone, so that naming the benchmark tool never rebuilds an engine
TRTLLM_BUILD_SETTINGS = tff.canonical({k: config["trtllm"][k] for k in ("flow", "examples_dir")}) if TRTLLM else "{}"


# A benchmark measures the machine, so locally it takes every core: no other job runs beside it (its
# GPUs are its own through the launcher's locks). profiles/slurm sets its threads back to 1.
BENCHMARK_THREADS = workflow.cores


def get_build_gpus(wildcards):
    """Builds that compile (TensorRT; a torch engine's captured decode step) need the GPUs they build for;
    otherwise the torch backend's build is a CPU re-layout."""
    tp = int(wildcards.tp)
    return tp if tff.build_flags(engine_config(wildcards), tp).compiles_at_build(tp) else 0


def get_compile_batch_sizes(wildcards):
    """A param, not part of the build key: which batch sizes are compiled ahead changes start-up, not results."""
    return json.dumps(compile_batch_sizes(engine_config(wildcards)))


def get_dataset_file(wildcards):
    return dataset_file(config["summarize"]["dataset"])


def get_dataset_checksum(wildcards):
    return paths.checksum_of(get_dataset_file(wildcards))


def one_rank(wildcards):
    return 1


def trains_on_gpu(wildcards):
    """The demo model's job holds a GPU where its recipe's device (settled at start) is cuda."""
    return int((config["models"][wildcards.model].get("recipe") or {}).get("device") == "cuda")


# GPU jobs: gpu = tp; tp > 1 also tasks = tp, one task per GPU and an MPI launcher; tp 1 none of
# these (the slurm executor rejects MPI jobs with one task). Returning None unsets a resource.
def rank_count(wildcards):
    return int(wildcards.tp)


def benchmark_ranks(wildcards):
    """TensorRT-LLM's benchmark tool is one process that starts the engine's ranks itself; the loop runs on each."""
    return int(wildcards.tp) if benchmark_tool(get_run_config(wildcards)) == "python-loop" else 1


def get_benchmark_tool_args(wildcards):
    tool = benchmark_tool(get_run_config(wildcards))
    return f"--tool {tool}" + ("" if tool == "python-loop" else f" --trtllm {shlex.quote(TRTLLM_SETTINGS)}")


def rank_tasks(wildcards):
    return int(wildcards.tp) if int(wildcards.tp) > 1 else None


def tasks_per_gpu(wildcards):
    return 1 if int(wildcards.tp) > 1 else None


def mpi_launcher(wildcards):
    return "srun" if int(wildcards.tp) > 1 else None


def get_variant_report_inputs(wildcards):
    return variant_report_inputs(config, wildcards.model)


def get_variant_runs(wildcards):
    return tff.canonical(variant_runs(config, wildcards.model))


def get_seed_benchmark_args(wildcards):
    return seed_benchmark_args(config, int(wildcards.tp))


def get_seed_table_inputs(wildcards):
    return seed_table_inputs(config, wildcards.model)


def get_seed_table_runs(wildcards):
    return tff.canonical(seed_table_runs(config, wildcards.model))


def get_seed_table_context(wildcards):
    return tff.canonical(seed_table_context(config, wildcards.model))


def refuse_unknown_target(wildcards):
    raise WorkflowError(unknown_target_message(config["models"], wildcards.unknown_target))


def get_final_output():
    return final_outputs(config)


def finished_message():
    """Where to look once a run has succeeded (the report, when this run made or kept one)."""
    if Path(paths.REPORT).is_file():
        return f"trtflow: done. Report: {Path(paths.REPORT).resolve()}"
    return "trtflow: done."
