rule build_engine:
    input:
        source=get_engine_source,
    output:
        directory("results/{model}/engines/tp{tp}/{build_key}"),
    params:
        flags=get_build_flags,
        backend=config["build"]["backend"],
        trtllm=tfc.canonical(config["trtllm"]),
    resources:
        gpu=get_build_gpus,
    container:
        TRTLLM_CONTAINER
    conda:
        ENGINE_ENV
    log:
        "logs/engine/{model}/tp{tp}-{build_key}.log",
    benchmark:
        "logs/benchmarks/engine/{model}/tp{tp}-{build_key}.tsv"
    shell:
        "python -m trtflow.gpus -n {resources.gpu} --"
        " python -m trtflow.build_engine --backend {params.backend} --source-dir {input.source}"
        " --out-dir {output} --flags {params.flags:q} --build-key {wildcards.build_key}"
        " --trtllm {params.trtllm:q} > {log} 2>&1"
