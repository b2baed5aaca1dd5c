rule benchmark:
    input:
        engine=get_engine_dir,
    output:
        report(
            paths.BENCHMARK,
            caption="../report/benchmark.rst",
            category="Speed",
            labels={"model": "{model}", "tp": "{tp}", "kind": "table"},
        ),
    params:
        build_key=get_build_key,
        args=benchmark_args(config["benchmark"]),
        launch=launcher(rank_count),
    resources:
        gpu=rank_count,
        tasks=rank_tasks,
        tasks_per_gpu=tasks_per_gpu,
        mpi=mpi_launcher,
    container:
        TRTLLM_CONTAINER
    conda:
        ENGINE_ENV
    log:
        "logs/benchmark/{model}/tp{tp}.log",
    shell:
        "{params.launch} trtflow.stages.benchmark --engine-dir {input.engine:q} --model {wildcards.model}"
        " {params.args} --build-key {params.build_key} --out {output:q} > {log:q} 2>&1"


rule benchmark_plot:
    input:
        rules.benchmark.output[0],
    output:
        report(
            paths.BENCHMARK_PLOT,
            caption="../report/benchmark.rst",
            category="Speed",
            labels={"model": "{model}", "tp": "{tp}", "kind": "plot"},
        ),
    localrule: True
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/benchmark/{model}/tp{tp}-plot.log",
    shell:
        "python -m trtflow.stages.report plot --csv {input:q} --out {output:q} > {log:q} 2>&1"
