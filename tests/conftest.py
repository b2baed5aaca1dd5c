"""Shared fixtures: tiny random GPT-2 checkpoints, and workflow copies in temp dirs."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

# Checks a skip may leave out on a developer's machine but not in CI: TRTFLOW_CI_REQUIRES (set by .ci/run) names
# those CI must run, and a skip whose reason says one was left out fails the run there.
REQUIRED_IN_CI = {"browser": "the report in a browser", "slurm": "no Slurm answers here",
                  "triton": "Triton is not in .triton/", "hub": "the hub path"}


def required_but_skipped(reasons: list[str], required: str) -> list[str]:
    """The names in `required` (comma-separated REQUIRED_IN_CI keys) whose check one of the skip `reasons` left out."""
    names = [name.strip() for name in required.split(",") if name.strip()]
    unknown = sorted(set(names) - set(REQUIRED_IN_CI))
    if unknown:
        raise ValueError(f"TRTFLOW_CI_REQUIRES names {unknown}; known: {sorted(REQUIRED_IN_CI)}")
    return sorted({name for name in names for reason in reasons if REQUIRED_IN_CI[name] in reason})


def pytest_sessionfinish(session, exitstatus):
    required = os.environ.get("TRTFLOW_CI_REQUIRES")
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if not required or terminal is None or hasattr(session.config, "workerinput"):
        return
    reasons = [str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
               for report in terminal.stats.get("skipped", [])]
    missed = required_but_skipped(reasons, required)
    if missed:
        terminal.write_line(f"CI: checks CI must run were skipped ({', '.join(missed)}); their skip reasons above say "
                            "what was missing", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def make_gpt2(folder: Path, n_head: int = 4, n_embd: int = 64, n_layer: int = 2, vocab: int = 1000,
              positions: int = 128, safetensors: bool = True, seed: int = 0, tied: bool = True) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        initializer_range=0.2, tie_word_embeddings=tied)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # layer-norm gains 1 + 0.5·N and non-trivial biases, so a wrong split or fold cannot hide
        for name, param in model.named_parameters():
            if "ln" in name:
                param.add_(torch.randn_like(param) * 0.5)
            elif "bias" in name:
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    if not safetensors:  # transformers 5 writes safetensors whatever it is asked: the older format by hand, as 4.x did
        weights = model.state_dict()
        if tied:
            weights.pop("lm_head.weight")
        torch.save(weights, folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("tiny") / "hf")


@pytest.fixture(scope="session")
def tiny_gpt2_bin(tmp_path_factory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("tiny-bin") / "hf", safetensors=False)


@pytest.fixture(scope="session")
def six_head_gpt2(tmp_path_factory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("six") / "hf", n_head=6, n_embd=96)


SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def changed(edit) -> dict:
    """The workflow's own config/config.yaml with `edit` applied to a copy of it."""
    import yaml

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    edit(config)
    return config


def validated(config: dict) -> dict:
    from trtflow.config import validate

    return validate(copy.deepcopy(config), SCHEMA)


def fit_tiny_model(config: dict) -> dict:
    """Limits that fit the tiny test checkpoints (n_positions 128)."""
    config["build"].update(max_input_len=64, max_output_len=32)
    config["summarize"].update(max_input_length=64, output_len=32)
    config["generate"]["max_output_len"] = 20
    return config


def engine_key(config: dict, tp: int, model: str = "demo") -> str:
    from trtflow.flags import build_key

    return build_key(validated(config), model, tp)


def cmodel_dir(config: dict, tp: int, model: str = "demo") -> str:
    """The c-model folder (relative to the workdir) the config asks for."""
    from trtflow import paths
    from trtflow.flags import convert_key

    return paths.CMODEL.format(model=model, tp=tp, convert_key=convert_key(validated(config), model))


def engine_dir(config: dict, tp: int, model: str = "demo") -> str:
    from trtflow import paths

    return paths.ENGINE.format(model=model, tp=tp, build_key=engine_key(config, tp, model))


class Workflow:
    """A copy of the workflow in a temp dir, driven by the real snakemake CLI."""

    def __init__(self, path: Path):
        self.path = path

    def run(self, *args: str, config: dict | None = None, check: bool = True, timeout: int = 900,
            env: dict | None = None):
        """snakemake in this folder; `env` (default: this process's) with this Python's folder first on PATH."""
        cmd = [SNAKEMAKE, "--cores", "2", *args]
        if config is not None:
            self.write_config(config)
        env = os.environ if env is None else env
        env = {**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
        proc = subprocess.run(cmd, cwd=self.path, capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
        return proc

    def write_config(self, config: dict) -> None:
        """Replace config/config.yaml, as a user editing it would."""
        import yaml

        (self.path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def planned_jobs(self, *targets: str, config: dict | None = None) -> list[tuple[str, dict]]:
        """(rule, wildcards) of each job a dry run plans, parsed per job block."""
        return [(rule, wildcards) for rule, wildcards, _ in self.planned_job_details(*targets, config=config)]

    def planned_job_details(self, *targets: str, config: dict | None = None) -> list[tuple[str, dict, dict]]:
        """(rule, wildcards, resources) of each job a dry run plans."""
        proc = self.run(*targets, "-n", "--quiet", "progress", config=config)
        jobs = []
        for line in (proc.stdout + proc.stderr).splitlines():
            stripped = line.strip()
            if stripped.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
                jobs.append((stripped.split()[1].rstrip(":"), {}, {}))
            for field, slot in (("wildcards:", 1), ("resources:", 2)):
                if stripped.startswith(field) and jobs:
                    pairs = stripped.removeprefix(field).split(",")
                    jobs[-1][slot].update(dict(p.strip().split("=", 1) for p in pairs if "=" in p))
        planned = [job for job in jobs if job[0] != "all"]
        if not planned and "Nothing to be done" not in proc.stdout + proc.stderr:  # else [] could mean "unparsed"
            raise AssertionError(f"the dry run planned no job this parser saw, and did not say so:\n{proc.stdout[-3000:]}")
        return planned


def copy_workflow(dest: Path) -> Workflow:
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("workflow", "config", "profiles"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return Workflow(dest)


@pytest.fixture
def workflow_dir(tmp_path) -> Workflow:
    return copy_workflow(tmp_path / "wf")


@pytest.fixture(scope="session")
def demo_resources(tmp_path_factory) -> Path:
    """The demo dataset and model, made once per test run by the real workflow rules. Under pytest-xdist the
    workers share one copy: the first to get here makes it while holding a lock, the others wait for it."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder every worker's base temp dir is made in
    made = root / "demo-resources" / "wf"
    with open(root / "demo-resources.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (made / ".complete").is_file():
            shutil.rmtree(made.parent, ignore_errors=True)
            copy_workflow(made).run("resources/models/demo/hf", "resources/datasets/demo/test.jsonl")
            (made / ".complete").touch()
    return made / "resources"


@pytest.fixture
def demo_workflow(tmp_path, demo_resources) -> Workflow:
    """A workflow copy whose resources/ already holds the demo model and dataset."""
    wf = copy_workflow(tmp_path / "wf")
    shutil.copytree(demo_resources, wf.path / "resources")
    return wf
