rule build_engine:
    input:
        source=get_engine_source,
        tokenizer=get_hf_dir,
    output:
        directory(paths.ENGINE),
    log:
        "logs/engine/{model}/tp{tp}-{build_key}.log",
    benchmark:
        "logs/benchmarks/engine/{model}/tp{tp}-{build_key}.tsv"
    conda:
        ENGINE_ENV
    container:
        TRTLLM_CONTAINER
    resources:
        gpu=get_build_gpus,
    params:
        flags=get_build_flags,
        trtllm=TRTLLM_BUILD_SETTINGS,
        compile_batch_sizes=get_compile_batch_sizes,
        launch=launcher(one_rank),
    shell:
        "{params.launch} trtflow.stages.build_engine --source-dir {input.source:q} --out-dir {output:q}"
        " --tokenizer-dir {input.tokenizer:q}"
        " --flags {params.flags:q} --build-key {wildcards.build_key} --trtllm {params.trtllm:q}"
        " --compile-batch-sizes {params.compile_batch_sizes:q} > {log:q} 2>&1"
