"""Conversion speed bar: a random gpt2-medium-shape checkpoint → c-model float16 at tp 1, 2 and 4.

Each conversion runs in a fresh child process so that its wall time and peak RSS are its own.
Prints a table and writes benchmarks/out/convert.csv.

    .venv/bin/python benchmarks/convert.py [--workdir /tmp/trtflow-convert-bench] [--tp 1 2 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The random checkpoint has no tokenizer; its end and pad id are its config's eos_token_id (the speed runs
# generate exactly their output lengths anyway).
CHECKPOINT_TOKEN_IDS = {"end_id": 50256, "pad_id": 50256}
SHAPE = {"n_layer": 24, "n_embd": 1024, "n_head": 16, "vocab_size": 50257, "n_positions": 1024}


def write_rows(path: Path, rows: list[dict]) -> None:
    """One CSV of a benchmark's rows (the first row's keys are the columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")


def c_model(work: Path) -> Path:
    """The gpt2-medium-shape random checkpoint's tp-1 fp16 c-model under `work`, made where it is missing."""
    from trtflow.formats import cmodel

    source = work / "c-model" / "1-gpu"
    if not source.is_dir():
        make_checkpoint(work / "hf")
        source = cmodel.convert(work / "hf", work / "c-model", 1, "float16", processes=8, progress=False)
    return source


def make_checkpoint(folder: Path, shape: dict = SHAPE) -> None:
    """HF GPT-2 names and shapes (Conv1D [in, out]), fp32 safetensors, random values."""
    import torch
    from safetensors.torch import save_file

    if (folder / "model.safetensors").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    H, V, P = shape["n_embd"], shape["vocab_size"], shape["n_positions"]
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    tensors = {"transformer.wte.weight": rand(V, H), "transformer.wpe.weight": rand(P, H),
               "transformer.ln_f.weight": torch.ones(H), "transformer.ln_f.bias": torch.zeros(H)}
    for i in range(shape["n_layer"]):
        p = f"transformer.h.{i}."
        tensors |= {p + "ln_1.weight": torch.ones(H), p + "ln_1.bias": torch.zeros(H),
                    p + "attn.c_attn.weight": rand(H, 3 * H), p + "attn.c_attn.bias": rand(3 * H),
                    p + "attn.c_proj.weight": rand(H, H), p + "attn.c_proj.bias": rand(H),
                    p + "ln_2.weight": torch.ones(H), p + "ln_2.bias": torch.zeros(H),
                    p + "mlp.c_fc.weight": rand(H, 4 * H), p + "mlp.c_fc.bias": rand(4 * H),
                    p + "mlp.c_proj.weight": rand(4 * H, H), p + "mlp.c_proj.bias": rand(H)}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "activation_function": "gelu_new",
              "layer_norm_epsilon": 1e-5, "n_inner": None, "tie_word_embeddings": True, "eos_token_id": 50256,
              "bos_token_id": 50256, **shape}
    (folder / "config.json").write_text(json.dumps(config, indent=2))


# VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child would report its parent's high-water
# mark at fork time (this script's own, after building the random checkpoint).
CHILD = """
import sys, time
started = time.perf_counter()
from trtflow.formats.cmodel import convert
imported = time.perf_counter()
convert(sys.argv[1], sys.argv[2], int(sys.argv[3]), "float16", int(sys.argv[4]), progress=False)
done = time.perf_counter()
hwm_kb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(imported - started, done - imported, hwm_kb / 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/trtflow-convert-bench")
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.workdir)
    make_checkpoint(work / "hf")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    rows = []
    for tp in args.tp:  # one fresh process per conversion, so each peak RSS is its own
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(work / "hf"), str(work / "c-model"), str(tp),
                              str(args.processes)], check=True, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        import_s, convert_s, peak_mb = (float(x) for x in out.stdout.split())
        written = sum(p.stat().st_size for p in (work / "c-model" / f"{tp}-gpu").iterdir())
        rows.append({"tp": tp, "storage_type": "float16", "process_wall_s": round(wall, 2),
                     "import_s": round(import_s, 2), "convert_s": round(convert_s, 2), "peak_rss_mb": round(peak_mb),
                     "written_mib": round(written / 2**20)})
        print(f"tp {tp}: process {wall:.2f} s (imports {import_s:.2f} s, conversion {convert_s:.2f} s), "
              f"peak RSS {peak_mb:.0f} MB, {written / 2**20:.0f} MiB written", flush=True)
    write_rows(ROOT / "benchmarks" / "out" / "convert.csv", rows)


if __name__ == "__main__":
    main()
