"""Run under the launcher (one process per rank): logits and greedy tokens of engines, for the tests.

    python -m trtflow.infra.launch -n TP tests/tp_check.py OUT.json PROMPTS.json ENGINE_DIR [ENGINE_DIR …]
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from trtflow.backends.torch.generator import TorchEngineGenerator  # noqa: E402
from trtflow.infra.dist import init_distributed, shutdown  # noqa: E402


def main() -> None:
    out, prompts_file, *engines = sys.argv[1:]
    prompts = json.loads(Path(prompts_file).read_text())
    dist = init_distributed()
    results = {}
    for engine_dir in engines:
        engine = TorchEngineGenerator(engine_dir, dist)
        logits = engine.forward_logits(prompts[0]).tolist()
        batch = engine.generate(prompts, 32, ignore_eos=True).output_ids
        single = [engine.generate([p], 32, ignore_eos=True).output_ids[0] for p in prompts]
        results[engine_dir] = {"logits": logits, "batch": batch, "single": single}
    if dist.is_main:
        Path(out).write_text(json.dumps(results))
    shutdown()


if __name__ == "__main__":
    main()
