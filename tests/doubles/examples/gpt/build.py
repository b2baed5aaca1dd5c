"""TEST DOUBLE for TensorRT-LLM v0.8.0 examples/gpt/build.py: records argv, writes the files it would."""
import argparse
import configparser
import json
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--model_dir", required=True)
parser.add_argument("--world_size", type=int, default=1)
parser.add_argument("--output_dir", required=True)
parser.add_argument("--timing_cache", default="model.cache")
parser.add_argument("--max_batch_size", type=int, default=256)
parser.add_argument("--max_input_len", type=int, default=200)
parser.add_argument("--max_output_len", type=int, default=200)
args, _ = parser.parse_known_args()
folder = os.environ.get("TRTFLOW_DOUBLE_RECORD")
if folder:
    Path(folder, f"build_py-{time.monotonic_ns()}.json").write_text(json.dumps({"argv": sys.argv, "cwd": os.getcwd()}))
ini = configparser.ConfigParser()
ini.read(Path(args.model_dir) / "config.ini")
dtype = ini["gpt"]["storage_dtype"]
out = Path(args.output_dir)
out.mkdir(parents=True, exist_ok=True)
for rank in range(args.world_size):
    (out / f"gpt_{dtype}_tp{args.world_size}_rank{rank}.engine").write_bytes(b"test double engine")
builder = {"precision": dtype, "tensor_parallel": args.world_size, "name": "gpt",
           "vocab_size": int(ini["gpt"]["vocab_size"]), "max_batch_size": args.max_batch_size,
           "max_input_len": args.max_input_len, "max_output_len": args.max_output_len}
(out / "config.json").write_text(json.dumps({"builder_config": builder, "plugin_config": {}}))
Path(args.timing_cache).write_bytes(b"timing cache")
