#!/usr/bin/env bash
# The recipe's table (results/{model}/seed_table.md) on a GPU box, from a fresh copy of this checkout each:
#   bash benchmarks/seed_table_gpu.sh OUT
# 1. the demo model with the default config (trained on the GPU, decode: auto);
# 2. a gpt2-medium-shaped model of random weights (24 layers, 1024 wide, 16 heads, vocabulary 50257; the demo
#    model's tokenizer, whose ids all fall inside that vocabulary), same config otherwise: its speed is
#    gpt2-medium's, its ROUGE means nothing.
# Needs .whl/ (../shared/tools/gpu-box-wheels.sh). Copies each table, its JSON and the files it read into OUT.
set -euo pipefail
out=$1
site=/tmp/trtflow-site
[ -d "$site" ] || python3 -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
export PYTHONPATH="$site"
mkdir -p "$out"
tree=$(mktemp -d /tmp/trtflow-tree.XXXX)
tar cf - --exclude=./.whl --exclude=./resources --exclude=./results --exclude=./.snakemake --exclude=./.oldmain \
  --exclude=./.probe . | tar xf - -C "$tree"
cd "$tree"
keep() {  # model
  mkdir -p "$out/$1"
  cp results/"$1"/seed_table.md results/"$1"/seed_table.json "$out/$1/"
  for f in results/"$1"/tp*/rouge.json results/"$1"/tp*/benchmark.csv results/"$1"/tp*/seed-benchmark.csv; do
    [ -f "$f" ] && cp "$f" "$out/$1/$(echo "${f#results/$1/}" | tr / _)"
  done
  mkdir -p "$out/$1/logs"; (cd logs && find . -name '*.log' | while read -r f; do cp "$f" "$out/$1/logs/$(echo "${f#./}" | tr / _)"; done)
}
printf "{}\n" > /tmp/none.yaml
start=$(date +%s)
python3 -m snakemake --cores all results/demo/seed_table.md --configfile /tmp/none.yaml > "$out/demo.log" 2>&1
echo "demo: $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
keep demo

PYTHONPATH="$site:workflow/scripts" python3 - <<'EOF'
import shutil
import torch
from transformers import GPT2Config, GPT2LMHeadModel

torch.manual_seed(0)
config = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=1024, n_layer=24, n_head=16)
GPT2LMHeadModel(config).save_pretrained("/tmp/gpt2m", safe_serialization=True)
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
    try:
        shutil.copy(f"resources/models/demo/hf/{name}", f"/tmp/gpt2m/{name}")
    except FileNotFoundError:
        pass
EOF
cat > /tmp/gpt2m.yaml <<'EOF'
models:
  gpt2m: {source: local, path: /tmp/gpt2m}
targets: [gpt2m]
EOF
start=$(date +%s)
python3 -m snakemake --cores all results/gpt2m/seed_table.md --configfile /tmp/gpt2m.yaml > "$out/gpt2m.log" 2>&1
echo "gpt2m: $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
keep gpt2m
