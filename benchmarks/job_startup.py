"""Where an engine-running job's start-up goes: `python benchmarks/job_startup.py ENGINE_DIR TOKENIZER_DIR`.

One fresh process, timed phase by phase the way the generate stage runs them: importing torch, importing
the stage's modules, loading the tokenizer, opening the engine (weights; a compiled engine's artifacts),
the first generate (compilation and CUDA-graph capture) and a second one. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()
marks: dict[str, float] = {}


def mark(name: str) -> None:
    marks[name] = round(time.perf_counter() - started - sum(marks.values()), 3)


import torch  # noqa: E402

mark("import_torch")
from trtflow.engines import open_engine  # noqa: E402
from trtflow.evaluation.tokenizer import encode, load_tokenizer  # noqa: E402
from trtflow.infra.dist import init_distributed  # noqa: E402

mark("import_trtflow")
tokenizer = load_tokenizer(sys.argv[2])
batch = [encode(tokenizer, "Born in north-east France, Soyer trained as a", 923)]
mark("tokenizer")
engine = open_engine(sys.argv[1], init_distributed())
mark("open_engine")
engine.generate(batch, 20)
torch.cuda.synchronize()
mark("first_generate")
engine.generate(batch, 20)
torch.cuda.synchronize()
mark("second_generate")
print(json.dumps({"engine": sys.argv[1], "total_s": round(time.perf_counter() - started, 3), **marks}))
