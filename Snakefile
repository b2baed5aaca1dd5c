# trtflow: the TensorRT-LLM GPT-2 recipe as a DAG of files. README.md explains the targets.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/engine.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/targets.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


onsuccess:
    print(finished_message())
