#!/usr/bin/env bash
# The whole demo DAG at tp 1 on a GPU box, once per config, each in a fresh copy of this checkout:
#   bash benchmarks/gpu_box_dag.sh OUT NAME=CONFIG [NAME=CONFIG ...]
# Needs .whl/ (../shared/tools/gpu-box-wheels.sh) and a trained resources/ (the demo model and data, copied in
# untimed). Appends per-job wall times to OUT/dag_jobs.csv (benchmarks/dag_jobs.py) and keeps each run's logs.
# Each run starts from an empty Triton cache of its own, as on a machine that never compiled these kernels.
set -euo pipefail
out=$1; shift
site=/tmp/trtflow-site
[ -d "$site" ] || python3 -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
export PYTHONPATH="$site"
mkdir -p "$out"
for run in "$@"; do
  name=${run%%=*}; config=${run#*=}
  tree=$(mktemp -d /tmp/trtflow-tree.XXXX)
  TRITON_CACHE_DIR=$(mktemp -d /tmp/triton-cache.XXXX); export TRITON_CACHE_DIR
  tar cf - --exclude=./.whl --exclude=./resources --exclude=./results --exclude=./.snakemake . | tar xf - -C "$tree"
  python3 benchmarks/dag_jobs.py --tree "$tree" --variant "$name" --configfile "$config" --resources resources \
    --cores 16 --gpus "$(nvidia-smi -L | wc -l)" --out "$out/dag_jobs.csv"
  logs="$out/logs-${name%% *}"; mkdir -p "$logs"
  (cd "$tree/logs" && find . -name '*.log' | while read -r f; do cp "$f" "$logs/$(echo "${f#./}" | tr / _)"; done)
done
