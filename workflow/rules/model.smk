rule demo_dataset:
    output:
        train="resources/datasets/demo/train.jsonl",
        test="resources/datasets/demo/test.jsonl",
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/datasets/demo.log",
    shell:
        "python -m trtflow.demo_data --out-dir resources/datasets/demo > {log} 2>&1"


rule cnn_dailymail_dataset:
    output:
        "resources/datasets/cnn_dailymail/test.jsonl",
    localrule: True
    resources:
        hf_hub=1,
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/datasets/cnn_dailymail.log",
    shell:
        "python -m trtflow.datasets_hub --out {output} > {log} 2>&1"


rule demo_model:
    input:
        train="resources/datasets/demo/train.jsonl",
    output:
        directory("resources/models/{model}/hf"),
    wildcard_constraints:
        model=names_with_source(config["models"], ("demo",)),
    params:
        recipe=lambda wc: tfc.canonical(config["models"][wc.model].get("recipe") or {}),
    threads: 2
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/models/{model}.log",
    benchmark:
        "logs/benchmarks/models/{model}.tsv"
    shell:
        "python -m trtflow.demo_model --train-file {input.train} --out-dir {output}"
        " --recipe {params.recipe:q} > {log} 2>&1"


rule download_model:
    output:
        directory("resources/models/{model}/hf"),
    wildcard_constraints:
        model=names_with_source(config["models"], ("hf", "local")),
    params:
        source=lambda wc: hub_args(config["models"][wc.model]),
    localrule: True
    resources:
        hf_hub=1,
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/models/{model}.log",
    shell:
        "python -m trtflow.hub {params.source} --out-dir {output} > {log} 2>&1"
