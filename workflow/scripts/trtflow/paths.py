"""Every artifact path, as Snakemake wildcard templates: the rules, the report, prune and the tests use these.

`{model}` is a key of `models`, `{tp}` a tensor-parallel degree, `{convert_key}` / `{build_key}` the content
keys of `trtflow.flags`. Results paths carry no key: `results/{model}/tp{tp}/…` always means "with the
settings in the config now".
"""

from __future__ import annotations

RESULTS = "results"

HF_DIR = "resources/models/{model}/hf"
DATASET = "resources/datasets/{dataset}/test.jsonl"
DEMO_DATASET_DIR = "resources/datasets/demo"
DEMO_TRAIN = DEMO_DATASET_DIR + "/train.jsonl"
DEMO_TEST = DEMO_DATASET_DIR + "/test.jsonl"

CMODEL_ROOT = RESULTS + "/{model}/c-model/{convert_key}"  # hf_gpt_convert.py's -o
CMODEL = CMODEL_ROOT + "/{tp}-gpu"  # ... and the {tp}-gpu leaf it writes
TRTLLM_CKPT_ROOT = RESULTS + "/{model}/trtllm-ckpt/{convert_key}"
TRTLLM_CKPT = TRTLLM_CKPT_ROOT + "/tp{tp}"
ENGINES = RESULTS + "/{model}/engines"
ENGINE = ENGINES + "/tp{tp}/{build_key}"

# Hugging Face's side of summarize, keyed by the model and the summarize settings: shared by every tp and engine.
HF_SUMMARY = RESULTS + "/{model}/hf-summaries/{hf_key}.json"

RUN = RESULTS + "/{model}/tp{tp}"
GENERATE = RUN + "/generate.json"
ROUGE = RUN + "/rouge.json"
GATE = RUN + "/accuracy.ok"
BENCHMARK = RUN + "/benchmark.csv"
BENCHMARK_PLOT = RUN + "/benchmark.png"
# The recipe's benchmark cases that the config's own benchmark grid lacks (seed_recipe.py), run only for the table
SEED_BENCHMARK = RUN + "/seed-benchmark.csv"
RUN_OUTPUTS = {"generate": GENERATE, "rouge": ROUGE, "gate": GATE, "benchmark": BENCHMARK, "plot": BENCHMARK_PLOT}

REPORT = RESULTS + "/report.html"

# The recipe's table for one model: every tp's ROUGE and benchmark beside the recipe's figures
SEED_TABLE = RESULTS + "/{model}/seed_table.md"
SEED_TABLE_JSON = RESULTS + "/{model}/seed_table.json"

# A named build variant (config `variants:`) beside the base run: its own run files, the engines still keyed by
# content (equal flags share one engine folder), and the page that shows every variant of a model side by side.
VARIANT_RUN = RUN + "/variants/{variant}"
VARIANT_OUTPUTS = {role: VARIANT_RUN + "/" + RUN_OUTPUTS[role].rsplit("/", 1)[1]
                   for role in ("generate", "rouge", "gate", "benchmark")}
VARIANTS_REPORT = RESULTS + "/{model}/variants.html"

# The folders named by a content key: a setting switched away leaves them behind (so switching back is free).
KEYED_FOLDERS = (CMODEL_ROOT, TRTLLM_CKPT_ROOT, ENGINE)


def checksum_of(template: str) -> str:
    """The `.sha256` file written beside a single-file artifact that another stage reads."""
    return template + ".sha256"


def run_outputs(model: str, tp: int) -> dict[str, str]:
    """The files of one model at one tp, by role (generate, rouge, gate, benchmark, plot)."""
    return {role: template.format(model=model, tp=tp) for role, template in RUN_OUTPUTS.items()}


def variant_outputs(model: str, tp: int, variant: str) -> dict[str, str]:
    """The files of one variant of one model at one tp, by role (generate, rouge, gate, benchmark)."""
    return {role: template.format(model=model, tp=tp, variant=variant) for role, template in VARIANT_OUTPUTS.items()}


def under(results_dir: str, template: str, **wildcards) -> str:
    """`template` filled in, with results/ replaced by `results_dir`."""
    return f"{results_dir}/{template.format(**wildcards).removeprefix(RESULTS + '/')}"
