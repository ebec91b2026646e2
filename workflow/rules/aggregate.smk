rule aggregate_accuracy:
    """One row per model x task x shots x seed: accuracy with a Wilson 95% interval."""
    input:
        samples=sample_outputs(),
    output:
        table="results/tables/icl_accuracy.csv",
    log:
        "logs/aggregate_accuracy.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/aggregate_accuracy.py"


rule plot_copy_accuracy:
    """Copy-task accuracy vs shots, with the reported GPT-3 points."""
    input:
        table="results/tables/icl_accuracy.csv",
    output:
        png=report(
            "results/figures/copy_accuracy.png",
            caption="../report/copy_accuracy.rst",
            category="ICL accuracy",
            labels={"figure": "copy accuracy"},
        ),
        pdf="results/figures/copy_accuracy.pdf",
    log:
        "logs/plot_copy_accuracy.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot_copy_accuracy.py"
