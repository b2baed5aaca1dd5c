"""Helpers the rules call at DAG time: targets, wildcard constraints, stage arguments (importable and tested)."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path

from . import paths, seed_recipe
from .config import BASE_VARIANT, ConfigError, check_model_fits, validate, variant_config
from .demo_recipe import DemoRecipe
from .flags import build_key, convert_key, decode_of
from .infra import machine


def model_regex(models: dict) -> str:
    return "|".join(re.escape(name) for name in models)


def unknown_target_regex(models: dict) -> str:
    """What under results/ no rule makes: a first folder that is no model of the config, or a `tp` folder whose
    degree is not a whole number from 1. Disjoint from every real rule's outputs, so the rule that refuses these
    is never ambiguous with them."""
    known = model_regex(models)
    return rf"(?!(?:{known})/)[^/]+/.+|(?:{known})/tp(?![1-9]\d*/)[^/]*/.+"


def unknown_target_message(models: dict, path: str) -> str:
    model, _, rest = path.partition("/")
    if model not in models:
        return (f"results/{path}: this config has no model `{model}` (models: {', '.join(models)}); add it under "
                "`models:` (config/README.md) or name a model it has")
    return (f"results/{path}: `{rest.split('/', 1)[0]}` is no tensor-parallel degree; a run folder is tp1, tp2, … "
            "(results/<model>/tp<N>/…)")


def names_with_source(models: dict, sources: tuple[str, ...]) -> str:
    names = [re.escape(n) for n, spec in models.items() if spec["source"] in sources]
    return "|".join(names) if names else "(?!)"


def demo_recipe(spec: dict) -> DemoRecipe:
    return DemoRecipe(**(spec.get("recipe") or {}))


def known_model_config(config: dict, model: str) -> tuple[dict, str] | None:
    """The checkpoint dimensions when they are known before any job runs. What the config names wins over an
    earlier import: the demo recipe (an edited one retrains the model), a local folder (re-saved, it is imported
    again); only a hub model is known from its fetched config.json alone."""
    spec = config["models"][model]
    if spec["source"] == "demo":
        recipe = asdict(demo_recipe(spec))
        return {k: recipe[k] for k in ("n_head", "n_positions")}, f"demo recipe of model `{model}`"
    if spec["source"] == "local":  # read up front, so the import changes nothing about what is accepted
        source = Path(spec["path"]).expanduser()
        return _read_config(source), str(source / "config.json")
    path = Path(paths.HF_DIR.format(model=model)) / "config.json"
    if path.is_file():
        return _read_config(path.parent), str(path)
    return None


def _read_config(folder: Path) -> dict:
    """A checkpoint's config.json through the converter's own reader (JSON, GPT-2, its dimensions), as a config
    error that names the file."""
    from .formats.hf_config import CheckpointError, read_hf_config

    try:
        return read_hf_config(folder)
    except CheckpointError as err:
        raise ConfigError(str(err)) from None


def check_config(config: dict, schema_path: str | Path) -> None:
    """All the Snakefile checks before it plans a job: the schema and the cross-field rules, then each model's
    dimensions where they are known up front. Raises ConfigError; fills the schema's defaults in `config`."""
    validate(config, schema_path)
    for name in config["models"]:
        known = known_model_config(config, name)
        if not known:
            continue
        for variant, run_config in run_configs(config).items():
            try:
                check_model_fits(run_config, name, *known)
            except ConfigError as err:
                raise ConfigError(f"variant `{variant}`: {err}" if variant else str(err)) from None


def settle_machine(config: dict, gpus: int | None, tp_named: bool, env: dict | None = None) -> list[str]:
    """Fit the config to the machine its jobs run on, before any job: `gpu_arch` settled (auto: this machine's,
    machine.gpu_arch) for `decode: auto` and the demo models' training device; with a pool of `gpus` GPUs on this
    machine (None: no pool, a CPU, or jobs sent to a cluster) the degrees of `tp` it cannot run are left out, or
    refused where `tp_named` (the user gave tp by --config or --configfile). Returns the lines to print at start."""
    config["gpu_arch"] = machine.gpu_arch(config["gpu_arch"], env)
    lines = []
    if gpus is not None and (over := [tp for tp in config["tp"] if tp > gpus]):
        degrees = ", ".join(map(str, over))
        if tp_named or len(over) == len(config["tp"]):
            raise ConfigError(f"tp: {degrees} needs more GPUs than this machine's pool has ({gpus}; CUDA_VISIBLE_DEVICES, "
                              f"TRTFLOW_GPU_POOL, nvidia-smi or --resources gpu=N); fix: run a tp of at most {gpus} "
                              f"(--config tp='[1]'), or submit to a cluster (--profile profiles/slurm)")
        config["tp"] = [tp for tp in config["tp"] if tp <= gpus]
        lines.append(f"trtflow: tp {degrees} left out: this machine's pool has {gpus} GPU(s). Running tp "
                     f"{', '.join(map(str, config['tp']))}; a cluster profile runs every degree, and "
                     f"--config tp='[…]' asks for degrees by name (refused where the pool is too small)")
    if config["build"]["backend"] == "torch" and config["build"]["decode"] == "auto":
        paths_by_tp = ", ".join(f"{decode_of(config, tp)} at tp {tp}" for tp in config["tp"])
        where = "no GPU here" if config["gpu_arch"] == "none" else f"GPU sm {config['gpu_arch']}"
        lines.append(f"trtflow: decode auto: {paths_by_tp} ({where}; build.decode names one)")
    return lines + [line for name, spec in config["models"].items() if spec["source"] == "demo"
                    for line in _settle_training_device(name, spec, config["gpu_arch"])]


def _settle_training_device(name: str, spec: dict, gpu_arch: str) -> list[str]:
    """A demo model's recipe.device settled: auto trains on the GPU where the jobs have one. The recipe then names
    "cuda", or no device for the CPU (the identity of a model trained on a CPU is as before devices were named)."""
    recipe = dict(spec.get("recipe") or {})
    asked = recipe.pop("device", "auto")
    if asked == "cuda" and gpu_arch == "none":
        raise ConfigError(f"models.{name}.recipe.device is cuda, but the jobs have no GPU (gpu_arch none); fix: "
                          "recipe.device auto or cpu, or set gpu_arch to the jobs' GPU under a cluster profile")
    on_gpu = asked == "cuda" or (asked == "auto" and gpu_arch != "none")
    spec["recipe"] = {**recipe, "device": "cuda"} if on_gpu else recipe
    return [f"trtflow: model {name} trains on the GPU (recipe.device cpu: the CPU's bytes)"] if on_gpu else []


def check_runs_here(tp: int, gpus: int | None) -> None:
    """Refuses, at DAG time, a job of `tp` ranks that this machine's pool of `gpus` GPUs cannot hold."""
    if gpus is not None and tp > gpus:
        raise ConfigError(f"tp {tp} needs {tp} GPUs but this machine's pool has {gpus} (CUDA_VISIBLE_DEVICES, "
                          f"TRTFLOW_GPU_POOL, nvidia-smi or --resources gpu=N); fix: ask for a tp1 target "
                          "(results/<model>/tp1/…), or submit to a cluster (--profile profiles/slurm)")


def check_mpi_here(backend: str, tp: int, local: bool, env: dict | None = None) -> None:
    """Refuses, at DAG time, TensorRT-LLM ranks on a machine that cannot start them from MPI (local jobs only:
    a cluster job starts its ranks with srun)."""
    from .infra.launch import MPI_FIX, mpi_launcher

    if backend == "trtllm" and tp > 1 and local and not mpi_launcher(env):
        raise ConfigError(f"tp {tp} with build.backend trtllm needs {tp} MPI ranks (TensorRT-LLM takes its rank and "
                          f"world size from MPI) and this machine has no mpirun; fix: {MPI_FIX}")


def run_configs(config: dict) -> dict[str | None, dict]:
    """The config itself (None) and each variant's, by name: everything a run can be made with."""
    return {None: config, **{name: variant_config(config, name) for name in config["variants"]}}


def run_config(config: dict, wildcards) -> dict:
    """The config a job's run files are made with: its variant's where the job has a `variant` wildcard."""
    return variant_config(config, getattr(wildcards, "variant", None))


def owner_of_build_key(config: dict, model: str, tp: int, key: str) -> dict | None:
    """The config (base or a variant) whose engine of `model` at `tp` has build key `key`: engines are keyed by
    content, so variants with equal flags share one engine folder, made with either's (equal) flags."""
    return next((c for c in run_configs(config).values() if build_key(c, model, tp) == key), None)


def owner_of_convert_key(config: dict, model: str, key: str) -> dict | None:
    """Likewise for a converted folder: variants that differ only in build flags share one conversion."""
    return next((c for c in run_configs(config).values() if convert_key(c, model) == key), None)


def variant_regex(config: dict) -> str:
    names = [re.escape(n) for n in config["variants"]]
    return "|".join(names) if names else "(?!)"


def source_stamp(spec: dict) -> str:
    """For a local model: every file's size and mtime, so re-saving the source re-imports it (a param)."""
    if spec["source"] != "local":
        return ""
    folder = Path(spec["path"]).expanduser()
    stamp = [(p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
             for p in sorted(folder.rglob("*")) if p.is_file() and ".cache" not in p.parts and p.name != "MANIFEST.json"]
    return json.dumps(stamp, separators=(",", ":"))


def unwritable_folder(workdir: Path) -> str | None:
    """Why the workflow could not write its outputs here (a file where a folder belongs, a read-only folder),
    or None. Tried by writing, since root passes every permission check."""
    import tempfile

    for name in ("results", "resources", "logs", ".snakemake", "."):
        folder = workdir / name
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, but the workflow writes a folder there: move it away"
        if folder.is_dir():
            try:
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as err:
                return f"cannot write in {folder} ({err.strerror}): make it writable or run from another folder"
    return None


def dataset_file(name: str) -> str:
    return paths.DATASET.format(dataset=name)


def hub_args(spec: dict) -> str:
    """trtflow.stages.download_model flags for a model entry, shell-quoted."""
    import shlex

    if spec["source"] == "local":
        return f"--source local --path {shlex.quote(spec['path'])}"
    include = " ".join(shlex.quote(p) for p in spec["include"])
    return (f"--source hf --repo-id {shlex.quote(spec['repo_id'])} --revision {shlex.quote(spec['revision'])}"
            f" --include {include}")


def generate_args(settings: dict) -> str:
    """As JSON, so a prompt may start with '-' or hold quotes and newlines and still arrive as written."""
    import shlex

    texts = shlex.quote(json.dumps(settings["input_text"]))
    return f"--input-text-json {texts} --max-output-len {settings['max_output_len']}"


def summarize_args(settings: dict) -> str:
    """The settings the engine and HF sides of summarize share (whether to compare is the HF summary input)."""
    return (f"--dataset-name {settings['dataset']} --max-ite {settings['max_ite']} --batch-size "
            f"{settings['batch_size']} --output-len {settings['output_len']} --max-input-length "
            f"{settings['max_input_length']}")


def benchmark_args(settings: dict) -> str:
    sizes = ";".join(str(b) for b in settings["batch_sizes"])
    pairs = ";".join(f"{i},{o}" for i, o in settings["input_output_len"])
    return (f"--batch-size '{sizes}' --input-output-len '{pairs}' --warm-up {settings['warm_up']} "
            f"--num-runs {settings['num_runs']} --duration {settings['duration']}")


def benchmark_tool(config: dict) -> str:
    """What measures a run's engine: TensorRT-LLM's gptSessionBenchmark for a flow-0.8 engine, as the recipe did;
    trtllm-bench for a flow-1.2 engine with in-flight batching (the only engines its executor loads); trtflow's
    Python loop (gptSessionBenchmark's method) for the others and for a torch engine."""
    build = config["build"]
    if build["backend"] != "trtllm":
        return "python-loop"
    if config["trtllm"]["flow"] == "0.8":
        return "gptSessionBenchmark"
    inflight = build["use_inflight_batching"] or (bool(build["use_gpt_attention_plugin"])
                                                  and build["remove_input_padding"] and build["paged_kv_cache"])
    return "trtllm-bench" if inflight else "python-loop"


def seed_cases_missing(config: dict, tp: int) -> list[tuple[int, int, int]]:
    """The recipe's benchmark cases at `tp` (batch, in, out) that the config's benchmark grid does not run."""
    grid = {(b, i, o) for b in config["benchmark"]["batch_sizes"] for i, o in config["benchmark"]["input_output_len"]}
    cases = [(c.batch_size, c.input_len, c.output_len) for c in seed_recipe.cases_at(tp)]
    return [case for case in cases if case not in grid]


def seed_benchmark_args(config: dict, tp: int) -> str:
    """The benchmark's flags for just the missing recipe cases (the recipe's are all batch 1: one grid holds them)."""
    missing = seed_cases_missing(config, tp)
    return benchmark_args({**config["benchmark"], "batch_sizes": sorted({b for b, _, _ in missing}),
                           "input_output_len": [[i, o] for _, i, o in missing]})


def seed_table_runs(config: dict, model: str) -> list[dict]:
    """Every tp of `model` with the files its row of the seed table reads: rouge.json, and the benchmark files that
    hold the recipe's cases at that tp (the run's own benchmark.csv, the seed-only one, or both)."""
    runs = []
    for tp in config["tp"]:
        files = paths.run_outputs(model, tp)
        missing = seed_cases_missing(config, tp)
        benchmarks = [files["benchmark"]] if len(missing) < len(seed_recipe.cases_at(tp)) else []
        if missing:
            benchmarks.append(paths.SEED_BENCHMARK.format(model=model, tp=tp))
        runs.append({"tp": tp, "rouge": files["rouge"], "benchmarks": benchmarks})
    return runs


def seed_table_inputs(config: dict, model: str) -> list[str]:
    files = [f for run in seed_table_runs(config, model) for f in (run["rouge"], *run["benchmarks"])]
    return files + [paths.checksum_of(f) for f in files]


def seed_table_context(config: dict, model: str) -> dict:
    """What the table names as this run's side: the model's source, the dataset and summarize settings, the backend
    and the gate's settings (the device and dtype come from the benchmark files)."""
    spec = config["models"][model]
    build = config["build"]
    backend = (f"trtllm (flow {config['trtllm']['flow']})" if build["backend"] == "trtllm" else
               "torch, decode " + ", ".join(f"{decode_of(config, tp)} at tp {tp}" for tp in config["tp"]))
    source = {"demo": "the demo model (trained here)", "hf": spec.get("repo_id"), "local": spec.get("path")}
    summarize = config["summarize"]
    return {"model": model, "source": spec["source"], "source_name": source.get(spec["source"]) or model,
            "backend": backend, "storage_type": config["convert"]["storage_type"], "dataset": summarize["dataset"],
            "summarize": {key: summarize[key] for key in seed_recipe.SUMMARIZE},
            "threshold": summarize["rouge1_threshold"], "k": summarize["max_se_below_hf"]}


def compile_batch_sizes(config: dict) -> list[int]:
    """The batch sizes the engine's jobs run (generate, summarize, benchmark) that the engine allows: what a
    torch engine compiling its decode step at build compiles for."""
    wanted = {len(config["generate"]["input_text"]), config["summarize"]["batch_size"],
              *config["benchmark"]["batch_sizes"]}
    return sorted(b for b in wanted if 1 <= b <= config["build"]["max_batch_size"])


def final_outputs(config: dict) -> list[str]:
    """What `snakemake` with no target builds: every run file of every target model at every tp, and the report;
    with variants, each target model's side-by-side page (which needs every variant's runs) too."""
    variants = [paths.VARIANTS_REPORT.format(model=model) for model in config["targets"]] if config["variants"] else []
    tables = [paths.SEED_TABLE.format(model=model) for model in config["targets"]]
    return [path for model in config["targets"] for tp in config["tp"]
            for path in paths.run_outputs(model, tp).values()] + tables + [paths.REPORT] + variants


def variant_runs(config: dict, model: str) -> list[dict]:
    """The runs the side-by-side page of `model` shows: the config itself, then each variant, at every tp, with
    the files it reads and the engine folder each was made by."""
    runs = []
    for variant, run_config in run_configs(config).items():
        for tp in config["tp"]:
            files = paths.variant_outputs(model, tp, variant) if variant else paths.run_outputs(model, tp)
            engine = paths.ENGINE.format(model=model, tp=tp, build_key=build_key(run_config, model, tp))
            runs.append({"variant": variant or BASE_VARIANT, "tp": tp, "rouge": files["rouge"],
                         "benchmark": files["benchmark"], "engine": engine,
                         "overrides": config["variants"][variant] if variant else {}})
    return runs


def variant_report_inputs(config: dict, model: str) -> list[str]:
    runs = variant_runs(config, model)
    files = [run[key] for run in runs for key in ("rouge", "benchmark")]
    return files + [paths.checksum_of(f) for f in files] + sorted({run["engine"] for run in runs})


def report_runs(config: dict) -> list[dict]:
    return [{"model": model, "tp": tp, **paths.run_outputs(model, tp)}
            for model in config["targets"] for tp in config["tp"]]


def report_summary(config: dict) -> dict:
    """The settings the report's numbers were made with, as one line of the page."""
    build = config["build"]
    return {"backend": build["backend"], "storage dtype": config["convert"]["storage_type"],
            "tp": ", ".join(map(str, config["tp"])), "dataset": config["summarize"]["dataset"],
            "examples": config["summarize"]["max_ite"] * config["summarize"]["batch_size"],
            "output length": config["summarize"]["output_len"],
            "ROUGE-1 threshold": config["summarize"]["rouge1_threshold"],
            "attention plugin": build["use_gpt_attention_plugin"], "remove input padding": build["remove_input_padding"],
            "paged KV": build["paged_kv_cache"],
            "decode": ", ".join(f"{decode_of(config, tp)} (tp {tp})" for tp in config["tp"])
            + (" (auto)" if build["decode"] == "auto" else "")}


def report_seed_tables(config: dict) -> list[str]:
    return [paths.SEED_TABLE_JSON.format(model=model) for model in config["targets"]]


def report_inputs(config: dict) -> list[str]:
    files = [run[key] for run in report_runs(config) for key in ("generate", "rouge", "gate", "benchmark", "plot")]
    files += report_seed_tables(config)
    return files + [paths.checksum_of(f) for f in files]


def prepare_job_environment(scripts_dir: Path) -> None:
    """Jobs run `python -m trtflow.stages.<stage>`: the Python (and mpirun) beside the one running Snakemake
    come first on PATH, and the package is importable without installing it."""
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(scripts_dir), os.environ.get("PYTHONPATH")) if p)
