# Helpers shared by all rules: config validation, wildcard constraints, output lists.
# No heavy imports here: the DAG must parse in well under a second.
import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from iclab.configcheck import check_config, task_type, task_variants  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml", set_default=True)


def resolve_task_paths(tasks):
    """Custom task files: relative to the working directory, else to the workflow directory."""
    for settings in tasks.values():
        path = settings.get("path")
        if path and not Path(path).is_absolute() and not Path(path).exists():
            candidate = Path(workflow.basedir) / path
            if candidate.exists():
                settings["path"] = str(candidate)


resolve_task_paths(config["tasks"])
check_config(config)

MODELS = {m["name"]: m for m in config["models"]}
TASKS = config["tasks"]
SEEDS = config["seeds"]
RUNTIME = config["runtime"]
USES_GPU = 0 if RUNTIME["provider"] == "cpu" else 1


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)) if MODELS else "^$",
    task="|".join(TASKS),
    variant=r"[a-z]+",
    shots=r"\d+",
    shard=r"baseline|layers\d+-\d+",
    seed=r"\d+",


def sample_outputs(types=None, suffix=".parquet"):
    """Every model x task x variant x shots x seed cell of the ICL sweep (of `types` if given)."""
    return [
        f"results/samples/{model}/{task}/{variant}/shots{shots}_seed{seed}{suffix}"
        for model in MODELS
        for task, settings in TASKS.items()
        if types is None or task_type(task, settings) in types
        for variant in task_variants(task, settings)
        for shots in settings["shots"]
        for seed in SEEDS
    ]


def task_files(wildcards):
    """The custom task's JSONL file, so that editing it reruns its cells."""
    path = TASKS[wildcards.task].get("path")
    return [path] if path else []


def has_task(kind):
    return any(task_type(name, settings) == kind for name, settings in TASKS.items())


def all_outputs():
    outputs = [f"resources/onnx/{model}/parity.json" for model in MODELS]
    if ATTENTION["cells"]:
        outputs += [f"resources/onnx/{model}/attention_parity.json" for model in MODELS]
    outputs += [
        "results/tables/icl_accuracy.csv",
        "results/tables/icl_differences.csv",
        *figure("accuracy_vs_shots"),
    ]
    if has_task("copy"):
        outputs += figure("copy_accuracy")
    if has_task("date"):
        outputs += ["results/tables/date_error_types.csv", "results/tables/date_error_by_year.csv"]
        outputs += figure("date_error_types") + figure("date_error_by_year")
    if has_task("remap"):
        outputs += figure("remap_variants")
    if ABLATION["cells"]:
        outputs += [
            "results/tables/head_effects.csv",
            "results/tables/head_importance.csv",
            "results/tables/importance_vs_ablation.csv",
            "results/tables/pruning_curves.csv",
        ]
        outputs += figure("ablation_heatmaps") + figure("importance_vs_ablation")
        outputs += figure("pruning_curves")
    if ATTENTION["cells"]:
        outputs += [
            "results/tables/attention_metrics.csv",
            "results/tables/attention_head_average.csv",
            "results/tables/induction_scores.csv",
            "results/tables/attention_vs_ablation.csv",
        ]
        outputs += figure("attention_heatmaps") + figure("attention_rows")
        if ABLATION["cells"]:
            outputs += figure("attention_vs_ablation")
    if DUALFORM["cells"]:
        outputs += ["results/tables/dualform_summary.csv", "results/tables/dualform_layers.csv"]
        outputs += figure("dualform_layers") + figure("dualform_accuracy")
    return outputs


ABLATION = config["ablation"]


ATTENTION = config["attention"]
DUALFORM = config["dualform"]


def cell_dirs(section):
    """results/{section}/{model}/{task}/{variant}/shots{K}_seed{S} for every model and cell."""
    settings = config[section]
    return [
        f"results/{section}/{model}/{c['task']}/{c['variant']}/shots{c['shots']}_seed{settings['seed']}"
        for model in MODELS
        for c in settings["cells"]
    ]


def model_layers(model):
    """Layer count from the model card (acquire_model is a checkpoint: cards exist when asked)."""
    import json

    card = checkpoints.acquire_model.get(model=model).output.card
    with open(card) as handle:
        return json.load(handle)["layers"]


def ablation_shards(wildcards):
    base = f"results/ablation/{wildcards.model}/{wildcards.task}/{wildcards.variant}/shots{wildcards.shots}_seed{wildcards.seed}"
    layers, step = model_layers(wildcards.model), ABLATION["layers_per_shard"]
    return [f"{base}/baseline.parquet"] + [
        f"{base}/layers{start}-{min(start + step, layers) - 1}.parquet"
        for start in range(0, layers, step)
    ]


def figure(name):
    return [f"results/figures/{name}.png", f"results/figures/{name}.pdf"]

