rule report_html:
    input:
        report_inputs(config),
    output:
        report("results/report.html", caption="../report/report.rst", category="Report"),
    params:
        runs=tfc.canonical(report_runs(config)),
    localrule: True
    log:
        "logs/report.log",
    shell:
        "{PY} trtflow.report html --runs {params.runs:q} --out {output} > {log} 2>&1"
