rule demo_dataset:
    output:
        train=paths.DEMO_TRAIN,
        test=paths.DEMO_TEST,
        train_checksum=paths.checksum_of(paths.DEMO_TRAIN),
        test_checksum=paths.checksum_of(paths.DEMO_TEST),
    log:
        "logs/datasets/demo.log",
    conda:
        "../envs/torch.yaml"
    params:
        out_dir=lambda wildcards, output: Path(output.train).parent,
    shell:
        "python -m trtflow.stages.demo_dataset --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule cnn_dailymail_dataset:
    output:
        jsonl=paths.DATASET.format(dataset="cnn_dailymail"),
        checksum=paths.checksum_of(paths.DATASET.format(dataset="cnn_dailymail")),
    log:
        "logs/datasets/cnn_dailymail.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    resources:
        hf_hub=1,
    shell:
        "python -m trtflow.stages.cnn_dailymail_dataset --out {output.jsonl:q} > {log:q} 2>&1"


rule demo_model:
    input:
        train=rules.demo_dataset.output.train,
        train_checksum=rules.demo_dataset.output.train_checksum,
    output:
        directory(paths.HF_DIR),
    log:
        "logs/models/{model}.log",
    benchmark:
        "logs/benchmarks/models/{model}.tsv"
    wildcard_constraints:
        model=names_with_source(config["models"], ("demo",)),
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        gpu=trains_on_gpu,
    params:
        recipe=lambda wc: tff.canonical(config["models"][wc.model].get("recipe") or {}),
        launch=launcher(one_rank),
    shell:
        "{params.launch} trtflow.stages.demo_model --train-file {input.train:q} --out-dir {output:q}"
        " --recipe {params.recipe:q} > {log:q} 2>&1"


rule download_model:
    output:
        directory(paths.HF_DIR),
    log:
        "logs/models/{model}.log",
    wildcard_constraints:
        model=names_with_source(config["models"], ("hf", "local")),
    localrule: True
    conda:
        "../envs/torch.yaml"
    resources:
        hf_hub=1,
    params:
        source=lambda wc: hub_args(config["models"][wc.model]),
        source_stamp=lambda wc: source_stamp(config["models"][wc.model]),
    shell:
        "python -m trtflow.stages.download_model {params.source} --out-dir {output:q} > {log:q} 2>&1"
