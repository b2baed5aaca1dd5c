"""The demo DAG through `--profile profiles/slurm` on a real single-node Slurm with 4 fake GPUs.

CI starts Slurm with tests/slurm/start.sh (Debian's slurmctld, slurmd and munge); where no Slurm
answers, these tests are skipped and say why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.slow


def slurm_state() -> str | None:
    if not shutil.which("sinfo"):
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.fixture(scope="module")
def slurm():
    state = slurm_state()
    if not state or not state.startswith(("idle", "mix", "alloc")):
        pytest.skip(f"no Slurm answers here (sinfo: {state!r}); start one with `sudo tests/slurm/start.sh` "
                    "after `apt-get install slurmctld slurmd slurm-client munge`")
    return state


def test_demo_dag_runs_through_the_slurm_profile(slurm, demo_workflow):
    wf = demo_workflow
    targets = ["results/demo/tp1/generate.json", "results/demo/tp2/generate.json", "results/demo/tp2/rouge.json"]
    proc = wf.run(*targets, "--profile", "profiles/slurm", "-j", "4", "--slurm-no-account",
                  "--slurm-init-seconds-before-status-checks", "1",
                  "--default-resources", "slurm_partition=gpu", "runtime=30", "mem_mb=1500", "disk_mb=1000",
                  check=False, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
    # the slurm executor's own line for each job it handed to sbatch (snakemake_executor_plugin_slurm)
    assert len(re.findall(r"Job \d+ has been submitted with SLURM jobid \d+", proc.stdout + proc.stderr)) >= 3
    tp1 = json.loads((wf.path / targets[0]).read_text())
    tp2 = json.loads((wf.path / targets[1]).read_text())
    # Slurm's gres gave each job its own fake GPUs, and the job saw them
    assert len(tp1["cuda_visible_devices"].split(",")) == 1
    assert len(tp2["cuda_visible_devices"].split(",")) == 2
    assert set(tp2["cuda_visible_devices"].split(",")) <= {"0", "1", "2", "3"}
    assert tp2["world_size"] == 2 and tp1["outputs"][0]["output_ids"] == tp2["outputs"][0]["output_ids"]
    rouge = json.loads((wf.path / targets[2]).read_text())
    assert rouge["world_size"] == 2 and rouge["engine"]["rouge1"] >= 40
