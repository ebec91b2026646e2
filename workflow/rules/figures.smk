rule plot_accuracy_vs_shots:
    """Accuracy vs shots per task and model, Wilson bands, reported GPT-3 numbers as markers."""
    input:
        table="results/tables/icl_accuracy.csv",
    output:
        png=report(
            "results/figures/accuracy_vs_shots.png",
            caption="../report/accuracy_vs_shots.rst",
            category="ICL accuracy",
            labels={"figure": "accuracy vs shots"},
        ),
        pdf="results/figures/accuracy_vs_shots.pdf",
    params:
        kind="accuracy_vs_shots",
    log:
        "logs/plots/accuracy_vs_shots.log",
    benchmark:
        "results/benchmarks/plot_accuracy_vs_shots/accuracy_vs_shots.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


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
    params:
        kind="copy_accuracy",
    log:
        "logs/plots/copy_accuracy.log",
    benchmark:
        "results/benchmarks/plot_copy_accuracy/copy_accuracy.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_remap_variants:
    """Label remapping: semantic vs remapped vs symbol labels, side by side."""
    input:
        table="results/tables/icl_accuracy.csv",
    output:
        png=report(
            "results/figures/remap_variants.png",
            caption="../report/remap_variants.rst",
            category="ICL accuracy",
            labels={"figure": "remap variants"},
        ),
        pdf="results/figures/remap_variants.pdf",
    params:
        kind="remap_variants",
    log:
        "logs/plots/remap_variants.log",
    benchmark:
        "results/benchmarks/plot_remap_variants/remap_variants.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_date_error_types:
    """Top date error types per shot count."""
    input:
        table="results/tables/date_error_types.csv",
    output:
        png=report(
            "results/figures/date_error_types.png",
            caption="../report/date_error_types.rst",
            category="Date errors",
            labels={"figure": "date error types"},
        ),
        pdf="results/figures/date_error_types.pdf",
    params:
        kind="date_error_types",
    log:
        "logs/plots/date_error_types.log",
    benchmark:
        "results/benchmarks/plot_date_error_types/date_error_types.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_date_error_by_year:
    """Date error rate by test year."""
    input:
        table="results/tables/date_error_by_year.csv",
    output:
        png=report(
            "results/figures/date_error_by_year.png",
            caption="../report/date_error_by_year.rst",
            category="Date errors",
            labels={"figure": "date error by year"},
        ),
        pdf="results/figures/date_error_by_year.pdf",
    params:
        kind="date_error_by_year",
    log:
        "logs/plots/date_error_by_year.log",
    benchmark:
        "results/benchmarks/plot_date_error_by_year/date_error_by_year.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_ablation_heatmaps:
    """Layer x head heatmaps of the exact single-head ablation effects."""
    input:
        effects="results/tables/head_effects.csv",
    output:
        png=report(
            "results/figures/ablation_heatmaps.png",
            caption="../report/ablation_heatmaps.rst",
            category="Head ablation",
            labels={"figure": "ablation heatmaps"},
        ),
        pdf="results/figures/ablation_heatmaps.pdf",
    params:
        kind="ablation_heatmaps",
    log:
        "logs/plots/ablation_heatmaps.log",
    benchmark:
        "results/benchmarks/plot_ablation_heatmaps/ablation_heatmaps.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_importance_vs_ablation:
    """Gradient importance against the exact ablation effect."""
    input:
        effects="results/tables/head_effects.csv",
        importance="results/tables/head_importance.csv",
        correlation="results/tables/importance_vs_ablation.csv",
    output:
        png=report(
            "results/figures/importance_vs_ablation.png",
            caption="../report/importance_vs_ablation.rst",
            category="Head ablation",
            labels={"figure": "importance vs ablation"},
        ),
        pdf="results/figures/importance_vs_ablation.pdf",
    params:
        kind="importance_vs_ablation",
    log:
        "logs/plots/importance_vs_ablation.log",
    benchmark:
        "results/benchmarks/plot_importance_vs_ablation/importance_vs_ablation.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_pruning_curves:
    """Accuracy as heads are pruned by importance and at random."""
    input:
        pruning="results/tables/pruning_curves.csv",
    output:
        png=report(
            "results/figures/pruning_curves.png",
            caption="../report/pruning_curves.rst",
            category="Head ablation",
            labels={"figure": "pruning curves"},
        ),
        pdf="results/figures/pruning_curves.pdf",
    params:
        kind="pruning_curves",
    log:
        "logs/plots/pruning_curves.log",
    benchmark:
        "results/benchmarks/plot_pruning_curves/pruning_curves.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_attention_heatmaps:
    """Layer x head heatmaps of AQ, entropy, focus and induction scores."""
    input:
        metrics="results/tables/attention_metrics.csv",
        induction="results/tables/induction_scores.csv",
    output:
        png=report(
            "results/figures/attention_heatmaps.png",
            caption="../report/attention_heatmaps.rst",
            category="Attention",
            labels={"figure": "attention heatmaps"},
        ),
        pdf="results/figures/attention_heatmaps.pdf",
    params:
        kind="attention_heatmaps",
    log:
        "logs/plots/attention_heatmaps.log",
    benchmark:
        "results/benchmarks/plot_attention_heatmaps/attention_heatmaps.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_attention_rows:
    """Example attention rows of the top heads over the prompt tokens."""
    input:
        rows="results/tables/attention_rows.csv",
    output:
        png=report(
            "results/figures/attention_rows.png",
            caption="../report/attention_rows.rst",
            category="Attention",
            labels={"figure": "attention rows"},
        ),
        pdf="results/figures/attention_rows.pdf",
    params:
        kind="attention_rows",
    log:
        "logs/plots/attention_rows.log",
    benchmark:
        "results/benchmarks/plot_attention_rows/attention_rows.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_attention_vs_ablation:
    """Attention metrics and induction scores against ablation effects."""
    input:
        metrics="results/tables/attention_metrics.csv",
        induction="results/tables/induction_scores.csv",
        effects="results/tables/head_effects.csv",
        correlation="results/tables/attention_vs_ablation.csv",
    output:
        png=report(
            "results/figures/attention_vs_ablation.png",
            caption="../report/attention_vs_ablation.rst",
            category="Attention",
            labels={"figure": "attention vs ablation"},
        ),
        pdf="results/figures/attention_vs_ablation.pdf",
    params:
        kind="attention_vs_ablation",
    log:
        "logs/plots/attention_vs_ablation.log",
    benchmark:
        "results/benchmarks/plot_attention_vs_ablation/attention_vs_ablation.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_dualform_layers:
    """SimAOU, SimAM and Kendall by layer with controls."""
    input:
        layers="results/tables/dualform_layers.csv",
    output:
        png=report(
            "results/figures/dualform_layers.png",
            caption="../report/dualform_layers.rst",
            category="ICL as finetuning",
            labels={"figure": "dual-form metrics by layer"},
        ),
        pdf="results/figures/dualform_layers.pdf",
    params:
        kind="dualform_layers",
    log:
        "logs/plots/dualform_layers.log",
    benchmark:
        "results/benchmarks/plot_dualform_layers/dualform_layers.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"


rule plot_dualform_accuracy:
    """Accuracy of ZSL, ICL and FT for the model and the control."""
    input:
        summary="results/tables/dualform_summary.csv",
    output:
        png=report(
            "results/figures/dualform_accuracy.png",
            caption="../report/dualform_accuracy.rst",
            category="ICL as finetuning",
            labels={"figure": "ZSL / ICL / FT accuracy"},
        ),
        pdf="results/figures/dualform_accuracy.pdf",
    params:
        kind="dualform_accuracy",
    log:
        "logs/plots/dualform_accuracy.log",
    benchmark:
        "results/benchmarks/plot_dualform_accuracy/dualform_accuracy.tsv"
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../../scripts/plot.py"
