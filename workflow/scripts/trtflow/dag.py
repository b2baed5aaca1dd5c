"""Helpers the rules call at DAG time: targets, wildcard constraints, stage arguments (importable and tested)."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path

from . import paths
from .demo_recipe import DemoRecipe


def model_regex(models: dict) -> str:
    return "|".join(re.escape(name) for name in models)


def names_with_source(models: dict, sources: tuple[str, ...]) -> str:
    names = [re.escape(n) for n, spec in models.items() if spec["source"] in sources]
    return "|".join(names) if names else "(?!)"


def demo_recipe(spec: dict) -> DemoRecipe:
    return DemoRecipe(**(spec.get("recipe") or {}))


def known_model_config(config: dict, model: str) -> tuple[dict, str] | None:
    """The checkpoint dimensions when they are known before any job runs (demo recipe or fetched config)."""
    path = Path(paths.HF_DIR.format(model=model)) / "config.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    spec = config["models"][model]
    if spec["source"] == "demo":
        recipe = asdict(demo_recipe(spec))
        return {k: recipe[k] for k in ("n_head", "n_positions")}, f"demo recipe of model `{model}`"
    return None


def dataset_file(name: str) -> str:
    return paths.DATASET.format(dataset=name)


def hub_args(spec: dict) -> str:
    """trtflow.hub flags for a model entry, shell-quoted."""
    import shlex

    if spec["source"] == "local":
        return f"--source local --path {shlex.quote(spec['path'])}"
    include = " ".join(shlex.quote(p) for p in spec["include"])
    return (f"--source hf --repo-id {shlex.quote(spec['repo_id'])} --revision {shlex.quote(spec['revision'])}"
            f" --include {include}")


def generate_args(settings: dict) -> str:
    import shlex

    texts = " ".join(shlex.quote(t) for t in settings["input_text"])
    return f"--input-text {texts} --max-output-len {settings['max_output_len']}"


def summarize_args(settings: dict) -> str:
    args = (f"--dataset-name {settings['dataset']} --max-ite {settings['max_ite']} --batch-size "
            f"{settings['batch_size']} --output-len {settings['output_len']} --max-input-length "
            f"{settings['max_input_length']}")
    return args + (" --compare-hf" if settings["compare_hf"] else "")


def benchmark_args(settings: dict) -> str:
    sizes = ";".join(str(b) for b in settings["batch_sizes"])
    pairs = ";".join(f"{i},{o}" for i, o in settings["input_output_len"])
    return (f"--batch-size '{sizes}' --input-output-len '{pairs}' --warm-up {settings['warm_up']} "
            f"--num-runs {settings['num_runs']} --duration {settings['duration']}")


def final_outputs(config: dict) -> list[str]:
    """What `snakemake` with no target builds: every run file of every target model at every tp, and the report."""
    return [path for model in config["targets"] for tp in config["tp"]
            for path in paths.run_outputs(model, tp).values()] + [paths.REPORT]


def report_runs(config: dict) -> list[dict]:
    return [{"model": model, "tp": tp, **paths.run_outputs(model, tp)}
            for model in config["targets"] for tp in config["tp"]]


def report_inputs(config: dict) -> list[str]:
    return [run[key] for run in report_runs(config) for key in ("rouge", "gate", "benchmark", "plot")]


def prepare_job_environment(scripts_dir: Path) -> None:
    """Jobs run `python -m trtflow.<stage>`: the Python (and mpirun) beside the one running Snakemake
    come first on PATH, and the package is importable without installing it."""
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(scripts_dir), os.environ.get("PYTHONPATH")) if p)
