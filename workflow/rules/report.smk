rule report_html:
    input:
        report_inputs(config),
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    params:
        runs=tfc.canonical(report_runs(config)),
    localrule: True
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/report.log",
    shell:
        "python -m trtflow.report html --runs {params.runs:q} --out {output} > {log} 2>&1"
