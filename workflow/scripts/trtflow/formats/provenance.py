"""Who built an artifact, with what: software versions, accelerator, host, git commit, time."""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def accelerator() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"device": "cpu", "gpu_name": None, "sm": None, "cuda": None, "driver": None}
    major, minor = torch.cuda.get_device_capability()
    driver = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        driver = out.stdout.strip().splitlines()[0] if out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"device": "cuda", "gpu_name": torch.cuda.get_device_name(), "sm": f"{major}{minor}",
            "cuda": torch.version.cuda, "driver": driver}


def software_versions() -> dict:
    return {name: package_version(name) for name in
            ("torch", "transformers", "safetensors", "tensorrt", "tensorrt_llm", "snakemake")} | {
        "python": platform.python_version()}


def provenance(extra: dict) -> dict:
    return {
        **extra,
        "versions": software_versions(),
        "accelerator": accelerator(),
        "host": socket.gethostname(),
        "git_commit": git_commit(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
