"""TEST DOUBLE for tensorrt_llm.runtime.ModelRunnerCpp: records calls, echoes the last prompt token."""
import json
import os
import time
from pathlib import Path

import torch


def _record(kind: str, payload: dict) -> None:
    folder = os.environ.get("TRTFLOW_DOUBLE_RECORD")
    if folder:
        name = f"{kind}-{os.getpid()}-{time.monotonic_ns()}.json"
        Path(folder, name).write_text(json.dumps(payload, default=str))


class ModelRunnerCpp:
    def __init__(self, engine_dir: str, rank: int):
        self.engine_dir, self.rank = engine_dir, rank

    @classmethod
    def from_dir(cls, engine_dir: str, rank: int = 0, **kwargs):
        engine = Path(engine_dir)
        config = json.loads((engine / "config.json").read_text())
        files = sorted(p.name for p in engine.glob("*.engine"))
        _record("runner", {"engine_dir": engine_dir, "rank": rank, "engine_files": files,
                           "legacy": "builder_config" in config})
        return cls(engine_dir, rank)

    def generate(self, batch_input_ids, max_new_tokens, end_id, pad_id, output_sequence_lengths=False,
                 return_dict=False, **sampling):
        _record("generate", {"rank": self.rank, "batch": len(batch_input_ids), "max_new_tokens": max_new_tokens,
                             "end_id": end_id, "pad_id": pad_id, **sampling})
        width = max(len(t) for t in batch_input_ids) + max_new_tokens
        out = torch.full((len(batch_input_ids), 1, width), pad_id, dtype=torch.int32)
        lengths = torch.zeros((len(batch_input_ids), 1), dtype=torch.int32)
        for b, ids in enumerate(batch_input_ids):
            n = len(ids)
            out[b, 0, :n] = ids
            out[b, 0, n: n + max_new_tokens] = ids[-1]
            lengths[b, 0] = n + max_new_tokens
        return {"output_ids": out, "sequence_lengths": lengths}
