"""The machine the workflow plans on, read once at DAG time without importing torch: the architecture of its GPUs
(for `build.decode: auto`) and how many GPUs its jobs may hold (for the tp it can run).

The planner exports the architecture it settled on as TRTFLOW_GPU_ARCH, so that every process after it (a job, a
Snakefile re-read inside a cluster job) resolves `auto` to the same decode path and so the same build key.
"""

from __future__ import annotations

import os
import subprocess

from .gpus import gpu_pool, visible_devices

ARCH_ENV = "TRTFLOW_GPU_ARCH"
NO_GPU = "none"


def probe_arch(env: dict | None = None) -> str:
    """The compute capability of this machine's GPUs as nvidia-smi reports it ("9.0"; the lowest where they
    differ), or "none" without an NVIDIA GPU or driver. Limited to CUDA_VISIBLE_DEVICES where it names indices."""
    env = os.environ if env is None else env
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index,compute_cap", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=20, env=dict(env))
    except (OSError, subprocess.SubprocessError):
        return NO_GPU
    visible = visible_devices(env)
    archs = []
    for line in listed.stdout.splitlines() if listed.returncode == 0 else []:
        index, _, cap = (part.strip() for part in line.partition(","))
        major, _, minor = cap.partition(".")
        if major.isdigit() and minor.isdigit() and (not visible or not all(v.isdigit() for v in visible)
                                                    or index in visible):
            archs.append((int(major), int(minor)))
    return "{}.{}".format(*min(archs)) if archs else NO_GPU


def gpu_arch(setting: str, env: dict | None = None) -> str:
    """The jobs' GPU architecture for the config's `gpu_arch` setting: itself unless "auto"; else what the planner
    exported (TRTFLOW_GPU_ARCH), else this machine's (probe_arch)."""
    env = os.environ if env is None else env
    if setting != "auto":
        return setting
    return env.get(ARCH_ENV) or probe_arch(env)


def local_gpu_count(env: dict | None = None, resources_gpu: int | None = None) -> int | None:
    """How many GPUs jobs on this machine may hold: the pool (gpus.gpu_pool), capped by `--resources gpu=N`;
    None where there is no pool (a CPU machine: every tp runs there, its ranks on gloo)."""
    pool = gpu_pool(env)
    if not pool:
        return None
    return len(pool) if resources_gpu is None else min(len(pool), resources_gpu)
