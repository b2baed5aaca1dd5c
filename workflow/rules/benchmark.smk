rule benchmark:
    input:
        engine=get_engine_dir,
    output:
        report(
            "results/{model}/tp{tp}/benchmark.csv",
            caption="../report/benchmark.rst",
            category="Speed",
            labels={"model": "{model}", "tp": "{tp}", "kind": "table"},
        ),
    params:
        build_key=get_build_key,
        args=benchmark_args(config["benchmark"]),
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
        "logs/benchmark/{model}/tp{tp}.log",
    shell:
        "python -m trtflow.gpus -n {resources.gpu} --"
        " python -m trtflow.launch -n {wildcards.tp} trtflow.bench --engine-dir {input.engine}"
        " --model {wildcards.model} {params.args} --out {output} > {log} 2>&1"


rule benchmark_plot:
    input:
        "results/{model}/tp{tp}/benchmark.csv",
    output:
        report(
            "results/{model}/tp{tp}/benchmark.png",
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
        "python -m trtflow.report plot --csv {input} --out {output} > {log} 2>&1"
