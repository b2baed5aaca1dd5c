"""Build time and job start-up of gpt2-medium-shape engines, per build variant:

    PYTHONPATH=workflow/scripts python3 benchmarks/engine_startup.py --tokenizer-dir resources/models/demo/hf --out DIR

Makes the random gpt2-medium-shape checkpoint of benchmarks/convert.py, converts it at tp 1 (fp16), builds one
engine per variant (timing the build: for `gemv` it compiles the decode step on the GPU), then times three fresh
processes of benchmarks/job_startup.py on each engine (RUNS). The tokenizer only encodes the prompt (any GPT-2 style
tokenizer.json will do: its ids are within the model's vocabulary). Writes engine_startup.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from convert import CHECKPOINT_TOKEN_IDS, make_checkpoint, write_rows  # noqa: E402
from trtflow.backends.torch.build import build  # noqa: E402
from trtflow.flags import BuildFlags  # noqa: E402
from trtflow.formats import cmodel  # noqa: E402

FLAGS = {"backend": "torch", "use_gpt_attention_plugin": "float16", "use_gemm_plugin": None,
         "remove_input_padding": True, "enable_context_fmha": False, "enable_context_fmha_fp32_acc": False,
         "paged_kv_cache": False, "use_inflight_batching": False, "tokens_per_block": 128, "max_batch_size": 8,
         "max_input_len": 924, "max_output_len": 100, "decode": "cuda-graph",
         "use_weight_only": False, "weight_only_precision": "int8"}
VARIANTS = {"cuda-graph": {}, "compile-gemv": {"decode": "compile-gemv"}, "kernels": {"decode": "kernels"}}
# Runs per engine: twice with this machine's compiler caches as the build left them, once with them empty (what
# another machine with the same GPU and software finds: only the engine folder).
RUNS = {"1": False, "2": False, "empty caches": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/trtflow-startup")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    work = Path(args.work)
    make_checkpoint(work / "hf")
    source = cmodel.convert(work / "hf", work / "c-model", 1, "float16", progress=False)
    rows = []
    for name in args.variants:
        changes = VARIANTS[name]
        started = time.perf_counter()
        engine = build(source, work / "engines" / name, BuildFlags.from_config({**FLAGS, **changes}, "float16"),
                       "0" * 10, CHECKPOINT_TOKEN_IDS, [1])
        build_s = time.perf_counter() - started
        for run, empty in RUNS.items():
            env = dict(os.environ)
            if empty:
                env.update(TRITON_CACHE_DIR=tempfile.mkdtemp(), TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp())
            probe = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "job_startup.py"), str(engine),
                                    args.tokenizer_dir], capture_output=True, text=True, check=True, env=env)
            phases = json.loads(probe.stdout.strip().splitlines()[-1])
            rows.append({"variant": name, "build_s": round(build_s, 1), "run": run, **phases})
            print(rows[-1], flush=True)
    write_rows(Path(args.out) / "engine_startup.csv", rows)


if __name__ == "__main__":
    main()
