"""Per-job wall times of one whole-DAG run: `python benchmarks/dag_jobs.py --tree DIR --variant NAME ...`.

Runs Snakemake in a checkout (`--tree`), then reads each job's start and end from Snakemake's own log (1 s
resolution: each job's shell command, from process start to its output written) and appends one row per
job to `--out` (CSV: variant, stage, model, tp, wall_s, device), plus a row `stage=dag_total` with the whole
run's wall time. `--resources` copies an existing resources/ folder in first, so the demo model is trained
once and not timed. Used for docs/benchmarks/data/2026-11-25-h100-start-up-demo-dag/h100_dag_jobs.csv.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from trtflow.infra.joblog import jobs_of  # noqa: E402


def device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.strip().splitlines()
        return out[0] if out else "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", required=True, help="a trtflow checkout to run in")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--resources", default=None, help="a resources/ folder to copy in first (not timed)")
    parser.add_argument("--cores", default="all")
    parser.add_argument("--gpus", type=int, default=None,
                        help="the box's GPU count (--resources gpu=N): GPU jobs then never wait for each other inside a "
                             "job, so each job's wall time is its own")
    parser.add_argument("--out", required=True)
    parser.add_argument("targets", nargs="*")
    args = parser.parse_args()

    tree = Path(args.tree).resolve()
    if args.resources and not (tree / "resources").exists():
        shutil.copytree(args.resources, tree / "resources", symlinks=True)
    command = [sys.executable, "-m", "snakemake", "--cores", args.cores, "--configfile",
               str(Path(args.configfile).resolve())]
    if args.gpus:
        command += ["--resources", f"gpu={args.gpus}"]
    command += ["--", *args.targets]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=tree, check=True)
    total = time.perf_counter() - started
    log = max((tree / ".snakemake" / "log").glob("*.snakemake.log"), key=os.path.getmtime)
    device = device_name()
    rows = [{"variant": args.variant, "stage": job.rule, "model": job.wildcards.get("model", ""),
             "tp": job.wildcards.get("tp", ""), "wall_s": f"{job.wall_s:.0f}", "device": device}
            for job in jobs_of(log.read_text())]
    rows.append({"variant": args.variant, "stage": "dag_total", "model": "", "tp": "", "wall_s": f"{total:.1f}",
                 "device": device})
    out = Path(args.out)
    new = not out.exists()
    with out.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["variant", "stage", "model", "tp", "wall_s", "device"])
        if new:
            writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(f"{row['variant']:10s} {row['stage']:16s} {row['model']:6s} tp{row['tp']:2s} {row['wall_s']:>7s} s")


if __name__ == "__main__":
    main()
