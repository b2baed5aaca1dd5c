"""Engine stage for the trtllm backend: drive TensorRT-LLM's own builder, record provenance.

TensorRT-LLM is never assumed on the host: this module runs the builder of the environment the job runs
in (a conda env or the NGC container) and refuses, with the provisioning steps, when it is absent or of
the wrong version for the configured flow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ...errors import KnownError
from ...flags import BuildFlags
from ...formats.artifact import atomic_dir, size_on_disk
from ...formats.cmodel import read_settings
from ...formats.provenance import provenance
from ...infra.gpus import gpu_pool
from ...infra.launch import find_program
from .commands import BuildCommand, build_py, trtllm_build

PROVISION = ("Provision TensorRT-LLM first: flow 0.8 runs in the NGC container "
             "nvcr.io/nvidia/tritonserver:24.02-trtllm-python-py3 (snakemake --sdm apptainer --apptainer-args --nv) "
             "with trtllm.examples_dir set to a checkout of NVIDIA/TensorRT-LLM at tag v0.8.0; flow 1.2 needs "
             "`pip install tensorrt_llm==1.2.*` and the examples of the matching tag")


class TrtllmUnavailable(KnownError, RuntimeError):
    pass


class TrtllmBuildError(KnownError, RuntimeError):
    """The builder failed or did not write what it should have; its own output precedes this in the log."""


def installed_version(python: str = sys.executable) -> str:
    probe = subprocess.run([python, "-c", "import tensorrt_llm; print(tensorrt_llm.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise TrtllmUnavailable(f"tensorrt_llm cannot be imported by {python}. {PROVISION}")
    return probe.stdout.strip().splitlines()[-1]


def check_flow(version: str, flow: str) -> None:
    if not version.startswith(flow + "."):
        raise TrtllmUnavailable(f"trtllm.flow is {flow!r} but the installed tensorrt_llm is {version}; use the "
                                f"environment of TensorRT-LLM {flow}.x or set trtllm.flow to match. {PROVISION}")


def command_for(flow: str, source: Path, out_dir: Path, work: Path, flags: BuildFlags, settings: dict) -> BuildCommand:
    gpus = len(gpu_pool())
    if flow == "0.8":
        examples = Path(settings.get("examples_dir") or os.environ.get("TRTLLM_EXAMPLES_DIR") or "")
        if not (examples / "gpt" / "build.py").is_file():
            raise TrtllmUnavailable(f"no examples/gpt/build.py under trtllm.examples_dir ({str(examples) or 'unset'}): "
                                    f"set it to the examples/ folder of the TensorRT-LLM v0.8.0 checkout. {PROVISION}")
        settings = read_settings(source)
        return build_py(sys.executable, examples, source, out_dir, work / "model.cache",
                        int(settings["tensor_parallelism"]), settings.get("storage_dtype", "float32"), flags, gpus)
    program = find_program("trtllm-build")
    if not program:
        raise TrtllmUnavailable(f"trtllm-build is not on PATH. {PROVISION}")
    tp = json.loads((source / "config.json").read_text())["mapping"]["tp_size"]
    return trtllm_build(program, source, out_dir, work / "model.cache", tp, flags, gpus)


def kept_timing_cache(out_dir: Path, source: Path, flow: str, version: str, flags: BuildFlags) -> Path:
    """Where the TensorRT timing cache of builds like this one is kept: beside the model's engines
    (results/{model}/trtllm-timing-caches/), one per conversion, flags, TensorRT-LLM and GPU architecture (not
    per tp: tactics are timed per layer shape, and each tp's build adds its own)."""
    from ...flags import digest
    from ...formats.provenance import accelerator

    key = digest({"flow": flow, "tensorrt_llm": version, "sm": accelerator()["sm"], "build": flags.to_json(),
                  "convert": source.parent.name})
    return out_dir.resolve().parents[2] / "trtllm-timing-caches" / f"{key}.cache"


def keep_timing_cache(work_cache: Path, kept: Path) -> None:
    """The build's timing cache into `kept`, replaced whole, so that the next build like it starts from the
    tactics this one measured instead of timing them again."""
    if not work_cache.is_file():
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_name(f".{kept.name}.{os.getpid()}")
    shutil.copyfile(work_cache, partial)
    os.replace(partial, kept)


def build(source_dir: str | Path, out_dir: str | Path, flags: BuildFlags, build_key: str, settings: dict,
          token_ids: dict[str, int]) -> Path:
    """The engine folder `out_dir`, built by the flow's tool from the kept timing cache (kept_timing_cache), which
    a build that succeeds updates."""
    flow = settings.get("flow", "0.8")
    version = installed_version()
    check_flow(version, flow)
    source, out_dir = Path(source_dir), Path(out_dir)
    meta = {"kind": "engine", "backend": "trtllm", "flow": flow, "build_key": build_key}
    with tempfile.TemporaryDirectory(prefix="trtflow-build-") as work, \
            atomic_dir(out_dir, meta, needed_bytes=size_on_disk(source)) as tmp:
        kept = kept_timing_cache(out_dir, source, flow, version, flags)
        if kept.is_file():
            shutil.copyfile(kept, Path(work) / "model.cache")
            print(f"timing cache: {kept}", flush=True)
        command = command_for(flow, source.resolve(), tmp.resolve(), Path(work), flags, settings)
        for note in command.notes:
            print(f"note: {note}", flush=True)
        print("build:", " ".join(command.argv), flush=True)
        # its own working dir per job: build.py reads and writes model.cache in the CWD
        result = subprocess.run(command.argv, cwd=work)
        if result.returncode != 0:
            raise TrtllmBuildError(f"the TensorRT-LLM builder failed (exit {result.returncode}); its output is above")
        missing = [name for name in command.expected_files if not (tmp / name).is_file()]
        if missing:
            raise TrtllmBuildError(f"the builder finished but did not write {', '.join(missing)} in {out_dir}")
        record = provenance({"build_key": build_key, "backend": "trtllm", "flow": flow, "tensorrt_llm": version,
                             "build": flags.to_json(), "argv": command.argv, "notes": command.notes, "source": str(source),
                             **token_ids})
        (tmp / "PROVENANCE.json").write_text(json.dumps(record, indent=2) + "\n")
        keep_timing_cache(Path(work) / "model.cache", kept)
    return out_dir
