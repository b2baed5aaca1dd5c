rule generate:
    input:
        engine=get_engine_dir,
        hf=get_hf_dir,
    output:
        "results/{model}/tp{tp}/generate.json",
    params:
        build_key=get_build_key,
        args=generate_args(config["generate"]),
    resources:
        gpu=gpu_count,
        tasks=rank_tasks,
        tasks_per_gpu=tasks_per_gpu,
        mpi=mpi_launcher,
    container:
        TRTLLM_CONTAINER
    conda:
        ENGINE_ENV
    log:
        "logs/generate/{model}/tp{tp}.log",
    shell:
        "python -m trtflow.gpus -n {resources.gpu} --"
        " python -m trtflow.launch -n {wildcards.tp} trtflow.generate --engine-dir {input.engine}"
        " --tokenizer-dir {input.hf} {params.args} --build-key {params.build_key}"
        " --out {output} > {log} 2>&1"


rule summarize:
    input:
        engine=get_engine_dir,
        hf=get_hf_dir,
        dataset=get_dataset_file,
    output:
        report(
            "results/{model}/tp{tp}/rouge.json",
            caption="../report/rouge.rst",
            category="Accuracy",
            labels={"model": "{model}", "tp": "{tp}"},
        ),
    params:
        build_key=get_build_key,
        args=summarize_args(config["summarize"]),
    resources:
        gpu=gpu_count,
        tasks=rank_tasks,
        tasks_per_gpu=tasks_per_gpu,
        mpi=mpi_launcher,
    container:
        TRTLLM_CONTAINER
    conda:
        ENGINE_ENV
    log:
        "logs/summarize/{model}/tp{tp}.log",
    benchmark:
        "logs/benchmarks/summarize/{model}/tp{tp}.tsv"
    shell:
        "python -m trtflow.gpus -n {resources.gpu} --"
        " python -m trtflow.launch -n {wildcards.tp} trtflow.summarize --engine-dir {input.engine}"
        " --hf-model-dir {input.hf} --dataset-file {input.dataset} {params.args}"
        " --build-key {params.build_key} --out {output} > {log} 2>&1"


rule accuracy_gate:
    input:
        "results/{model}/tp{tp}/rouge.json",
    output:
        "results/{model}/tp{tp}/accuracy.ok",
    params:
        threshold=config["summarize"]["rouge1_threshold"],
        k=config["summarize"]["max_se_below_hf"],
    localrule: True
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/gate/{model}/tp{tp}.log",
    shell:
        "python -m trtflow.gate --rouge {input} --threshold {params.threshold} --k {params.k}"
        " --out {output} > {log} 2>&1"
