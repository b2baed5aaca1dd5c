rule report_html:
    input:
        report_inputs(config),
    output:
        report(paths.REPORT, caption="../report/report.rst", category="Report"),
    params:
        runs=tff.canonical(report_runs(config)),
        summary=tff.canonical(report_summary(config)),
    localrule: True
    conda:
        "../../envs/torch.yaml"
    log:
        "logs/report.log",
    shell:
        "python -m trtflow.stages.report html --runs {params.runs:q} --summary {params.summary:q} --out {output:q} > {log:q} 2>&1"
