#!/usr/bin/env bash
# docs/benchmarks/current.csv's speed rows in one command on one GPU, every baseline in the same run: this tree's
# kernels engines (fp16 and int8 weight-only) beside HF generate, HF's static-cache compiled path and the bandwidth
# floor; the previous main's kernels engines (PREVIOUS_TREE: that commit's files, e.g. `git archive`d); and, where
# torchao imports, HF's static path over torchao's int8 weight-only linears.
#   bash benchmarks/refresh_current.sh PREVIOUS_TREE PREVIOUS_COMMIT COMMIT OUT [gpu_speed.py arguments]
# Writes OUT/{main,previous,torchao}/ (each gpu_speed.py run's files), OUT/*.log and OUT/current.csv, the rows to
# take in here: python3 benchmarks/current.py merge OUT/current.csv
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: bash benchmarks/refresh_current.sh PREVIOUS_TREE PREVIOUS_COMMIT COMMIT OUT [gpu_speed.py arguments]" >&2
  exit 2
fi
if [ ! -f "$1/benchmarks/gpu_speed.py" ]; then
  echo "refresh_current: $1 holds no benchmarks/gpu_speed.py; give the previous main's files:" \
    "mkdir DIR && git archive COMMIT | tar -x -C DIR" >&2
  exit 2
fi
previous=$(cd "$1" && pwd) previous_commit=$2 commit=$3 out=$4
shift 4
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
kernels=(trtflow-cudagraph-triton trtflow-cudagraph-triton-int8wo)
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/current.csv"

speed() {  # TREE NAME gpu_speed.py arguments: one gpu_speed.py run of TREE into OUT/NAME, its output in OUT/NAME.log
  local tree=$1 name=$2
  shift 2
  if ! (cd "$tree" && PYTHONPATH="workflow/scripts${PYTHONPATH:+:$PYTHONPATH}" "$python" benchmarks/gpu_speed.py \
        --out "$out/$name" --work "${TMPDIR:-/tmp}/trtflow-current-$name" --current "$out/$name/current.csv" "$@") \
        >"$out/$name.log" 2>&1
  then
    echo "refresh_current: gpu_speed.py failed in $tree ($name); its output: $out/$name.log" >&2
    exit 1
  fi
  echo "$name: $(tail -n 1 "$out/$name.log")"
}

merge() {  # CSV [current.py merge options]: a run's rows into OUT/current.csv
  "$python" "$here/benchmarks/current.py" merge --into "$out/current.csv" "$@"
}

speed "$here" main --variants "${kernels[@]}" --hf dynamic static --hf-num-runs 3 --commit "$commit" "$@"
merge "$out/main/current.csv"
speed "$previous" previous --variants "${kernels[@]}" --hf dynamic --hf-num-runs 1 --commit "$previous_commit" "$@"
merge "$out/previous/current.csv" --previous-main --systems "${kernels[@]}"
if "$python" -c "import torchao" 2>/dev/null; then
  speed "$here" torchao --variants --hf static-torchao-int8 --hf-num-runs 3 --cases 1,60,100 64,128,100 \
    --commit "$commit" "$@"
  merge "$out/torchao/current.csv" --systems hf-transformers-static-compiled-torchao-int8wo
else
  echo "torchao: not importable, so no torchao row (docs/benchmarks/README.md says which wheel to carry)"
fi
