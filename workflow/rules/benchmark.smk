rule benchmark:
    input:
        engine=get_engine_dir,
        hf=get_hf_dir,
    output:
        csv=report(
            paths.BENCHMARK,
            caption="../report/benchmark.rst",
            category="Speed",
            labels={"model": "{model}", "tp": "{tp}", "kind": "table"},
        ),
        checksum=paths.checksum_of(paths.BENCHMARK),
    log:
        "logs/benchmark/{model}/tp{tp}.log",
    conda:
        ENGINE_ENV
    container:
        TRTLLM_CONTAINER
    threads: BENCHMARK_THREADS
    resources:
        gpu=rank_count,
        tasks=rank_tasks,
        tasks_per_gpu=tasks_per_gpu,
        mpi=mpi_launcher,
    params:
        build_key=get_build_key,
        args=benchmark_args(config["benchmark"]),
        tool=get_benchmark_tool_args,
        launch=launcher(benchmark_ranks),
    shell:
        "{params.launch} trtflow.stages.benchmark --engine-dir {input.engine:q} --model {wildcards.model}"
        " --hf-dir {input.hf:q} {params.args} {params.tool} --build-key {params.build_key} --out {output.csv:q}"
        " > {log:q} 2>&1"


rule benchmark_plot:
    input:
        csv=rules.benchmark.output.csv,
        checksum=rules.benchmark.output.checksum,
    output:
        png=report(
            paths.BENCHMARK_PLOT,
            caption="../report/benchmark.rst",
            category="Speed",
            labels={"model": "{model}", "tp": "{tp}", "kind": "plot"},
        ),
        checksum=paths.checksum_of(paths.BENCHMARK_PLOT),
    log:
        "logs/benchmark/{model}/tp{tp}-plot.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    shell:
        "python -m trtflow.stages.report plot --csv {input.csv:q} --out {output.png:q} > {log:q} 2>&1"


use rule benchmark as benchmark_variant with:
    output:
        csv=report(
            paths.VARIANT_OUTPUTS["benchmark"],
            caption="../report/benchmark.rst",
            category="Speed",
            labels={"model": "{model}", "tp": "{tp}", "variant": "{variant}", "kind": "table"},
        ),
        checksum=paths.checksum_of(paths.VARIANT_OUTPUTS["benchmark"]),
    log:
        "logs/benchmark/{model}/tp{tp}-variant-{variant}.log",


# The recipe's benchmark cases the config's grid lacks (results/{model}/seed_table.md reads them), and only those.
use rule benchmark as seed_benchmark with:
    output:
        csv=paths.SEED_BENCHMARK,
        checksum=paths.checksum_of(paths.SEED_BENCHMARK),
    log:
        "logs/benchmark/{model}/tp{tp}-seed.log",
    params:
        build_key=get_build_key,
        args=get_seed_benchmark_args,
        tool=get_benchmark_tool_args,
        launch=launcher(benchmark_ranks),
