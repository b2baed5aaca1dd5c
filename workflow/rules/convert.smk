rule convert_cmodel:
    input:
        get_hf_dir,
    output:
        directory(paths.CMODEL),
    log:
        "logs/convert/{model}/c-model-{convert_key}-tp{tp}.log",
    benchmark:
        "logs/benchmarks/convert/{model}/c-model-{convert_key}-tp{tp}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["convert"]["processes"]
    params:
        storage_type=get_storage_type,
        out_root=lambda wc: paths.CMODEL_ROOT.format(model=wc.model, convert_key=wc.convert_key),
    shell:
        "python -m trtflow.stages.convert_cmodel -i {input:q} -o {params.out_root:q} -tp {wildcards.tp}"
        " -t {params.storage_type} -p {threads} > {log:q} 2>&1"


rule convert_trtllm_checkpoint:
    input:
        get_hf_dir,
    output:
        directory(paths.TRTLLM_CKPT),
    log:
        "logs/convert/{model}/trtllm-ckpt-{convert_key}-tp{tp}.log",
    conda:
        "../envs/torch.yaml"
    params:
        dtype=get_storage_type,
        quantization=get_checkpoint_quantization,
    shell:
        "python -m trtflow.stages.convert_trtllm_checkpoint --model_dir {input:q} --output_dir {output:q}"
        " --tp_size {wildcards.tp} --dtype {params.dtype} {params.quantization} > {log:q} 2>&1"
