"""`make trtllm-selfcheck`: does the trtllm backend work with the TensorRT-LLM installed here?

On a GPU box with TensorRT-LLM, it runs the real workflow on the demo model twice in one work folder: with
the trtllm backend (the installed version's flow; tp 1, and tp 2 where two GPUs are free) and with the torch
backend, then compares greedy tokens (engine vs HF greedy on the same prompts) and ROUGE, and writes one
table (selfcheck.md, selfcheck.json) with the versions and every command that ran: the snakemake calls and
the builder command lines recorded in each engine's PROVENANCE.json. Without TensorRT-LLM it stops at once
with the provisioning steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import paths
from .engines import trtllm_version
from .errors import KnownError, run_stage
from .infra.gpus import gpu_pool

REPO = Path(__file__).resolve().parents[3]


def flow_of(version: str) -> str:
    return "0.8" if version.startswith("0.") else "1.2"


def selfcheck_config(backend: str, flow: str, tps: list[int], examples_dir: str | None) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["models"] = {"demo": {"source": "demo"}}
    config["targets"], config["tp"] = ["demo"], tps
    config["build"]["backend"] = backend
    config["trtllm"] = {"flow": flow, "examples_dir": examples_dir}
    config["summarize"]["compare_hf"] = True
    return config


def run_workflow(work: Path, config: dict, name: str, tps: list[int], cores: str) -> list[str]:
    config_file = work / f"config-{name}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    targets = [f"results/demo/tp{tp}/{f}" for tp in tps for f in ("generate.json", "rouge.json")]
    command = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "workflow" / "Snakefile"),
               "--directory", str(work), "--configfile", str(config_file), "--cores", cores, *targets]
    print("$", " ".join(command), flush=True)
    if subprocess.run(command, cwd=REPO).returncode != 0:
        raise KnownError(f"the {name} run failed (command above); its logs are under {work}/logs")
    for tp in tps:
        run = work / "runs" / name / f"tp{tp}"
        run.mkdir(parents=True, exist_ok=True)
        for file in ("generate.json", "rouge.json"):
            shutil.copy2(work / paths.RUN.format(model="demo", tp=tp) / file, run / file)
    return command


def hf_greedy(work: Path, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    import torch

    from .evaluation.tokenizer import token_ids
    from .hf_reference import HFGenerator

    hf_dir = work / paths.HF_DIR.format(model="demo")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hf = HFGenerator(hf_dir, device, token_ids(hf_dir))
    return [hf.generate([p], max_new_tokens).output_ids[0] for p in prompts]


def agreement(tokens: list[list[int]], reference: list[list[int]]) -> str:
    """Positions where the tokens equal the reference's, out of the longer row's length (rows may differ)."""
    same = sum(a == b for t, r in zip(tokens, reference, strict=True) for a, b in zip(t, r, strict=False))
    total = sum(max(len(t), len(r)) for t, r in zip(tokens, reference, strict=True))
    return f"{same}/{total}"


def table(work: Path, runs: list[tuple[str, int]]) -> list[dict]:
    rows, hf_tokens = [], None
    for name, tp in runs:
        generate = json.loads((work / "runs" / name / f"tp{tp}" / "generate.json").read_text())
        rouge = json.loads((work / "runs" / name / f"tp{tp}" / "rouge.json").read_text())
        prompts = [o["input_ids"] for o in generate["outputs"]]
        tokens = [o["output_ids"] for o in generate["outputs"]]
        if hf_tokens is None:
            hf_tokens = hf_greedy(work, prompts, generate["max_output_len"])
        engine_dir = Path(generate["engine_dir"])
        engine_dir = engine_dir if engine_dir.is_absolute() else work / engine_dir
        provenance = json.loads((engine_dir / "PROVENANCE.json").read_text())
        rows.append({"backend": name, "tp": tp, "greedy_tokens_equal_to_hf": agreement(tokens, hf_tokens),
                     "rouge1": rouge["engine"]["rouge1"], "rouge2": rouge["engine"]["rouge2"],
                     "rougeL": rouge["engine"]["rougeL"], "hf_rouge1": rouge["hf"]["rouge1"],
                     "output_tokens": tokens, "builder_argv": provenance.get("argv")})
    return rows


def write_report(work: Path, versions: dict, commands: list[list[str]], rows: list[dict]) -> Path:
    (work / "selfcheck.json").write_text(json.dumps({"versions": versions, "commands": commands, "rows": rows},
                                                    indent=2) + "\n")
    lines = ["# trtflow TensorRT-LLM self-check", "", *[f"- {k}: {v}" for k, v in versions.items()], "",
             "| backend | tp | greedy tokens equal to HF | ROUGE-1 | ROUGE-2 | ROUGE-L | HF ROUGE-1 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['backend']} | {r['tp']} | {r['greedy_tokens_equal_to_hf']} | {r['rouge1']:.2f} | "
              f"{r['rouge2']:.2f} | {r['rougeL']:.2f} | {r['hf_rouge1']:.2f} |" for r in rows]
    lines += ["", "## Commands", "", *[f"    {' '.join(c)}" for c in commands]]
    lines += ["", "## Builder command lines (from each engine's PROVENANCE.json)", ""]
    lines += [f"    {' '.join(r['builder_argv'])}" for r in rows if r["builder_argv"]]
    report = work / "selfcheck.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Check the trtllm backend against the TensorRT-LLM installed here.")
    parser.add_argument("--workdir", default="selfcheck", help="a folder of its own (default: selfcheck/)")
    parser.add_argument("--cores", default="all")
    args = parser.parse_args(argv)

    version = trtllm_version()  # refuses at once, with the provisioning steps, where TensorRT-LLM is absent
    flow = flow_of(version)
    examples_dir = os.environ.get("TRTLLM_EXAMPLES_DIR")
    if flow == "0.8" and not examples_dir:
        raise KnownError("TensorRT-LLM 0.8 builds with its examples/gpt/build.py: set TRTLLM_EXAMPLES_DIR to the "
                         "examples/ folder of a v0.8.0 checkout and rerun")
    gpus = len(gpu_pool())
    tps = [1, 2] if gpus >= 2 else [1]
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    commands, runs = [], []
    for backend in ("trtllm", "torch"):
        config = selfcheck_config(backend, flow, tps, examples_dir)
        commands.append(run_workflow(work, config, backend, tps, args.cores))
        runs += [(backend, tp) for tp in tps]
    import torch
    import transformers

    versions = {"tensorrt_llm": version, "flow": flow, "torch": torch.__version__,
                "transformers": transformers.__version__, "gpus": gpus,
                "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    report = write_report(work, versions, commands, table(work, runs))
    print(report.read_text())
    print(f"trtflow: self-check written to {report}")


if __name__ == "__main__":
    run_stage(main)
