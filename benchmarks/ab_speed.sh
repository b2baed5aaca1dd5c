#!/usr/bin/env bash
# gpu_speed.py on two trees in one command, alternating A B A B … so that a drift of the machine falls on both:
#   bash benchmarks/ab_speed.sh OLD_TREE OUT ROUNDS [gpu_speed.py arguments]
# Writes OUT/{old,new}-N/gpu_speed.csv and OUT/ab.csv (tree, round, system, case, latency, tokens/s).
set -uo pipefail
old=$1 out=$2 rounds=$3
shift 3
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  for tree in old new; do
    src=.; [ "$tree" = old ] && src=$old
    (cd "$src" && PYTHONPATH=workflow/scripts python3 benchmarks/gpu_speed.py --out "$out/$tree-$round" \
      --work "/tmp/trtflow-ab-$tree" "$@") > "$out/$tree-$round.log" 2>&1
    echo "$tree round $round: rc $? ($out/$tree-$round.log)"
  done
done
python3 - "$out" "$rounds" <<'PY'
import csv, sys
out, rounds = sys.argv[1], int(sys.argv[2])
with open(f"{out}/ab.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["tree", "round", "system", "batch_size", "input_len", "output_len", "latency_ms", "tokens_per_s"])
    for round in range(1, rounds + 1):
        for tree in ("old", "new"):
            for row in csv.DictReader(open(f"{out}/{tree}-{round}/gpu_speed.csv")):
                writer.writerow([tree, round, row["system"], row["batch_size"], row["input_len"], row["output_len"],
                                 row["latency_ms"], row["tokens_per_s"]])
print(open(f"{out}/ab.csv").read())
PY
