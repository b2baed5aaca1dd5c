# A target under results/ that no rule makes (a model the config lacks, tp0): refused while the DAG is built,
# with the fix, instead of Snakemake's MissingRuleException. Its job never runs: the input function raises.
rule refuse_unknown_target:
    input:
        refuse_unknown_target,
    output:
        "results/{unknown_target}",
    log:
        "logs/unknown-target/{unknown_target}.log",
    wildcard_constraints:
        unknown_target=unknown_target_regex(config["models"]),
    localrule: True
    conda:
        "../envs/torch.yaml"
    shell:
        "false > {log:q} 2>&1"
