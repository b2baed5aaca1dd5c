rule convert_cmodel:
    input:
        get_hf_dir,
    output:
        directory("results/{model}/c-model/{tp}-gpu"),
    params:
        storage_type=config["convert"]["storage_type"],
        out_root=lambda wc: f"results/{wc.model}/c-model",
    threads: config["convert"]["processes"]
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/convert/{model}/c-model-tp{tp}.log",
    benchmark:
        "logs/benchmarks/convert/{model}/c-model-tp{tp}.tsv"
    shell:
        "python -m trtflow.cmodel -i {input} -o {params.out_root} -tp {wildcards.tp}"
        " -t {params.storage_type} -p {threads} > {log} 2>&1"


rule convert_trtllm_checkpoint:
    input:
        get_hf_dir,
    output:
        directory("results/{model}/trtllm-ckpt/tp{tp}"),
    params:
        dtype=config["convert"]["storage_type"],
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/convert/{model}/trtllm-ckpt-tp{tp}.log",
    shell:
        "python -m trtflow.trtllm_ckpt --model_dir {input} --output_dir {output}"
        " --tp_size {wildcards.tp} --dtype {params.dtype} > {log} 2>&1"
