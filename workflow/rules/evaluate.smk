rule generate:
    input:
        engine=get_engine_dir,
        hf=get_hf_dir,
    output:
        generate=paths.GENERATE,
        checksum=paths.checksum_of(paths.GENERATE),
    log:
        "logs/generate/{model}/tp{tp}.log",
    conda:
        ENGINE_ENV
    container:
        TRTLLM_CONTAINER
    resources:
        gpu=rank_count,
        tasks=rank_tasks,
        tasks_per_gpu=tasks_per_gpu,
        mpi=mpi_launcher,
    params:
        build_key=get_build_key,
        args=get_generate_args,
        launch=launcher(rank_count),
    shell:
        "{params.launch} trtflow.stages.generate --engine-dir {input.engine:q} --tokenizer-dir {input.hf:q}"
        " {params.args} --build-key {params.build_key} --out {output.generate:q} > {log:q} 2>&1"


rule hf_summarize:
    input:
        hf=get_hf_dir,
        dataset=get_dataset_file,
        dataset_checksum=get_dataset_checksum,
    output:
        summary=paths.HF_SUMMARY,
        checksum=paths.checksum_of(paths.HF_SUMMARY),
    log:
        "logs/hf-summaries/{model}/{hf_key}.log",
    benchmark:
        "logs/benchmarks/hf-summaries/{model}/{hf_key}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        args=get_hf_summary_args,
        launch=launcher(one_rank),
    shell:
        "{params.launch} trtflow.stages.hf_summarize --hf-model-dir {input.hf:q} --dataset-file {input.dataset:q}"
        " {params.args} --out {output.summary:q} > {log:q} 2>&1"


rule summarize:
    input:
        engine=get_engine_dir,
        hf=get_hf_dir,
        dataset=get_dataset_file,
        dataset_checksum=get_dataset_checksum,
        hf_summary=get_hf_summary,
    output:
        rouge=report(
            paths.ROUGE,
            caption="../report/rouge.rst",
            category="Accuracy",
            labels={"model": "{model}", "tp": "{tp}"},
        ),
        checksum=paths.checksum_of(paths.ROUGE),
    log:
        "logs/summarize/{model}/tp{tp}.log",
    benchmark:
        "logs/benchmarks/summarize/{model}/tp{tp}.tsv"
    conda:
        ENGINE_ENV
    container:
        TRTLLM_CONTAINER
    resources:
        gpu=rank_count,
        tasks=rank_tasks,
        tasks_per_gpu=tasks_per_gpu,
        mpi=mpi_launcher,
    params:
        build_key=get_build_key,
        args=summarize_args(config["summarize"]),
        hf=hf_summary_arg,
        launch=launcher(rank_count),
    shell:
        "{params.launch} trtflow.stages.summarize --engine-dir {input.engine:q} --hf-model-dir {input.hf:q}"
        " --dataset-file {input.dataset:q} {params.args} {params.hf} --build-key {params.build_key}"
        " --out {output.rouge:q} > {log:q} 2>&1"


rule accuracy_gate:
    input:
        rouge=rules.summarize.output.rouge,
        checksum=rules.summarize.output.checksum,
    output:
        gate=paths.GATE,
        checksum=paths.checksum_of(paths.GATE),
    log:
        "logs/gate/{model}/tp{tp}.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    params:
        threshold=config["summarize"]["rouge1_threshold"],
        k=config["summarize"]["max_se_below_hf"],
    shell:
        "python -m trtflow.stages.accuracy_gate --rouge {input.rouge:q} --threshold {params.threshold}"
        " --k {params.k} --out {output.gate:q} > {log:q} 2>&1"


# A named build variant (config `variants:`): the same jobs on the variant's engine, into its own run folder.
use rule generate as generate_variant with:
    output:
        generate=paths.VARIANT_OUTPUTS["generate"],
        checksum=paths.checksum_of(paths.VARIANT_OUTPUTS["generate"]),
    log:
        "logs/generate/{model}/tp{tp}-variant-{variant}.log",


use rule summarize as summarize_variant with:
    output:
        rouge=report(
            paths.VARIANT_OUTPUTS["rouge"],
            caption="../report/rouge.rst",
            category="Accuracy",
            labels={"model": "{model}", "tp": "{tp}", "variant": "{variant}"},
        ),
        checksum=paths.checksum_of(paths.VARIANT_OUTPUTS["rouge"]),
    log:
        "logs/summarize/{model}/tp{tp}-variant-{variant}.log",
    benchmark:
        "logs/benchmarks/summarize/{model}/tp{tp}-variant-{variant}.tsv"


use rule accuracy_gate as accuracy_gate_variant with:
    input:
        rouge=rules.summarize_variant.output.rouge,
        checksum=rules.summarize_variant.output.checksum,
    output:
        gate=paths.VARIANT_OUTPUTS["gate"],
        checksum=paths.checksum_of(paths.VARIANT_OUTPUTS["gate"]),
    log:
        "logs/gate/{model}/tp{tp}-variant-{variant}.log",
