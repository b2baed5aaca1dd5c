rule demo_dataset:
    output:
        train=paths.DEMO_TRAIN,
        test=paths.DEMO_TEST,
        train_checksum=paths.checksum_of(paths.DEMO_TRAIN),
        test_checksum=paths.checksum_of(paths.DEMO_TEST),
    params:
        out_dir=lambda wildcards, output: Path(output.train).parent,
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/datasets/demo.log",
    shell:
        "python -m trtflow.stages.demo_dataset --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule cnn_dailymail_dataset:
    output:
        jsonl=paths.DATASET.format(dataset="cnn_dailymail"),
        checksum=paths.checksum_of(paths.DATASET.format(dataset="cnn_dailymail")),
    localrule: True
    resources:
        hf_hub=1,
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/datasets/cnn_dailymail.log",
    shell:
        "python -m trtflow.stages.cnn_dailymail_dataset --out {output.jsonl:q} > {log:q} 2>&1"


rule demo_model:
    input:
        train=rules.demo_dataset.output.train,
        train_checksum=rules.demo_dataset.output.train_checksum,
    output:
        directory(paths.HF_DIR),
    wildcard_constraints:
        model=names_with_source(config["models"], ("demo",)),
    params:
        recipe=lambda wc: tff.canonical(config["models"][wc.model].get("recipe") or {}),
        launch=launcher(one_rank),
    resources:
        gpu=trains_on_gpu,
    threads: 2
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/models/{model}.log",
    benchmark:
        "logs/benchmarks/models/{model}.tsv"
    shell:
        "{params.launch} trtflow.stages.demo_model --train-file {input.train:q} --out-dir {output:q}"
        " --recipe {params.recipe:q} > {log:q} 2>&1"


rule download_model:
    output:
        directory(paths.HF_DIR),
    wildcard_constraints:
        model=names_with_source(config["models"], ("hf", "local")),
    params:
        source=lambda wc: hub_args(config["models"][wc.model]),
        source_stamp=lambda wc: source_stamp(config["models"][wc.model]),
    localrule: True
    resources:
        hf_hub=1,
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/models/{model}.log",
    shell:
        "python -m trtflow.stages.download_model {params.source} --out-dir {output:q} > {log:q} 2>&1"
