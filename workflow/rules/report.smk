rule report_html:
    input:
        report_inputs(config),
    output:
        report(paths.REPORT, caption="../report/report.rst", category="Report"),
    log:
        "logs/report.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    params:
        runs=tff.canonical(report_runs(config)),
        summary=tff.canonical(report_summary(config)),
        seed_tables=tff.canonical(report_seed_tables(config)),
    shell:
        "python -m trtflow.stages.report html --runs {params.runs:q} --summary {params.summary:q}"
        " --seed-tables {params.seed_tables:q} --out {output:q} > {log:q} 2>&1"


rule variants_report:
    input:
        get_variant_report_inputs,
    output:
        report(paths.VARIANTS_REPORT, caption="../report/variants.rst", category="Report"),
    log:
        "logs/variants/{model}.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    params:
        runs=get_variant_runs,
        threshold=config["summarize"]["rouge1_threshold"],
        k=config["summarize"]["max_se_below_hf"],
    shell:
        "python -m trtflow.stages.variants_report --model {wildcards.model} --runs {params.runs:q}"
        " --threshold {params.threshold} --k {params.k} --out {output:q} > {log:q} 2>&1"


rule seed_table:
    input:
        get_seed_table_inputs,
        hf=get_hf_dir,
    output:
        md=report(paths.SEED_TABLE, caption="../report/seed_table.rst", category="Report"),
        json=paths.SEED_TABLE_JSON,
        checksum=paths.checksum_of(paths.SEED_TABLE_JSON),
    log:
        "logs/seed-table/{model}.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    params:
        runs=get_seed_table_runs,
        context=get_seed_table_context,
    shell:
        "python -m trtflow.stages.seed_table --model {wildcards.model} --runs {params.runs:q} --context {params.context:q}"
        " --hf-dir {input.hf:q} --out-json {output.json:q} --out-md {output.md:q} > {log:q} 2>&1"
