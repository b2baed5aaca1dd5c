"""GPU ids per job on one machine: disjoint under concurrency, freed when a job is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SNAKEMAKE
from trtflow.infra.gpus import GpuPoolError, acquire, gpu_pool

SNAKEFILE = """
rule all:
    input: expand("out/{job}.json", job=["a", "b", "c", "d", "e", "f"])

rule gpu_job:
    output: "out/{job}.json"
    params: n=lambda wc: 2 if wc.job in ("e", "f") else 1
    resources: gpu=lambda wc: 2 if wc.job in ("e", "f") else 1
    shell: "python -m trtflow.infra.gpus -n {resources.gpu} -- python record.py {output}"
"""
RECORD = """
import json, os, sys, time
start = time.time(); time.sleep(1.5)
json.dump({"ids": os.environ["CUDA_VISIBLE_DEVICES"].split(","), "start": start, "end": time.time()},
          open(sys.argv[1], "w"))
"""


def test_concurrent_jobs_get_disjoint_gpu_ids(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "record.py").write_text(RECORD)
    env = {**os.environ, "TRTFLOW_GPU_POOL": "4", "TRTFLOW_GPU_LOCK_DIR": str(tmp_path / "locks"),
           "PYTHONPATH": str(ROOT / "workflow" / "scripts"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([SNAKEMAKE, "--cores", "4", "--resources", "gpu=4"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out").iterdir()}
    assert {len(j["ids"]) for k, j in jobs.items() if k in "ef"} == {2}
    overlapping = 0
    for a in jobs:
        for b in jobs:
            if a < b and jobs[a]["start"] < jobs[b]["end"] and jobs[b]["start"] < jobs[a]["end"]:
                overlapping += 1
                assert not set(jobs[a]["ids"]) & set(jobs[b]["ids"]), (a, b, jobs[a], jobs[b])
    assert overlapping >= 3  # jobs really ran side by side
    assert all(set(j["ids"]) <= {"0", "1", "2", "3"} for j in jobs.values())


def test_a_killed_jobs_gpus_are_reused(tmp_path):
    env = {**os.environ, "TRTFLOW_GPU_POOL": "4", "TRTFLOW_GPU_LOCK_DIR": str(tmp_path / "locks"),
           "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    holder = subprocess.Popen([sys.executable, "-m", "trtflow.infra.gpus", "-n", "4", "--", "sleep", "60"], env=env,
                              stderr=subprocess.PIPE, text=True)
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3" in holder.stderr.readline()
    with pytest.raises(GpuPoolError, match="no 1 free GPU"):
        acquire(1, ["0", "1", "2", "3"], tmp_path / "locks", timeout=0.5)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    ids, fds = acquire(4, ["0", "1", "2", "3"], tmp_path / "locks", timeout=5)
    assert ids == ["0", "1", "2", "3"] and time.monotonic() - started < 1


def test_pool_comes_from_slurm_visible_devices_first():
    assert gpu_pool({"CUDA_VISIBLE_DEVICES": "2,3", "TRTFLOW_GPU_POOL": "8"}) == ["2", "3"]
    assert gpu_pool({"TRTFLOW_GPU_POOL": "3"}) == ["0", "1", "2"]
    assert gpu_pool({"TRTFLOW_GPU_POOL": "4,6"}) == ["4", "6"]


def test_more_gpus_than_the_pool_is_a_clear_error(tmp_path):
    with pytest.raises(GpuPoolError, match="needs 4 GPU\\(s\\) but the pool has 2"):
        acquire(4, ["0", "1"], tmp_path)


def test_without_a_set_pool_the_gpus_nvidia_smi_lists_are_the_pool(monkeypatch):
    import subprocess as sp

    import trtflow.infra.gpus as gpus

    listing = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-a)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-b)\n"
    monkeypatch.setattr(gpus.subprocess, "run", lambda *a, **k: sp.CompletedProcess(a, 0, stdout=listing))
    assert gpu_pool({}) == ["0", "1"]

    def missing(*args, **kwargs):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(gpus.subprocess, "run", missing)
    assert gpu_pool({}) == []


def test_a_wait_for_held_gpus_says_who_holds_them(tmp_path, capsys):
    """A held GPU lock made a job wait silently for up to an hour: now the wait names the holder, periodically."""
    env = {**os.environ, "TRTFLOW_GPU_POOL": "1", "TRTFLOW_GPU_LOCK_DIR": str(tmp_path / "locks"),
           "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    holder = subprocess.Popen([sys.executable, "-m", "trtflow.infra.gpus", "-n", "1", "--", "sleep", "60"], env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert "CUDA_VISIBLE_DEVICES=0" in holder.stderr.readline()
        with pytest.raises(GpuPoolError, match=rf"GPU 0: pid {holder.pid} \(.*gpus.py -n 1 -- sleep 60"):
            acquire(1, ["0"], tmp_path / "locks", timeout=1.5, report_every=0.5)
        waited = capsys.readouterr().err
        assert "waiting" in waited and f"GPU 0: pid {holder.pid}" in waited
    finally:
        holder.kill()
        holder.wait()
