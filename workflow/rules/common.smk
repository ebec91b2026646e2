# Helpers shared by all rules: config validation, wildcard constraints, output lists.
# No heavy imports here: the DAG must parse in well under a second.
import re
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from iclab.configcheck import check_config  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml", set_default=True)
check_config(config)

MODELS = {m["name"]: m for m in config["models"]}
TASKS = config["tasks"]
SEEDS = config["seeds"]
RUNTIME = config["runtime"]
USES_GPU = 0 if RUNTIME["provider"] == "cpu" else 1


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)) if MODELS else "^$",
    task="|".join(TASKS),
    shots=r"\d+",
    seed=r"\d+",


def sample_outputs(suffix=".parquet"):
    """Every model x task x shots x seed cell of the ICL sweep."""
    return [
        f"results/samples/{model}/{task}/shots{shots}_seed{seed}{suffix}"
        for model in MODELS
        for task, settings in TASKS.items()
        for shots in settings["shots"]
        for seed in SEEDS
    ]


def all_outputs():
    outputs = [f"resources/onnx/{model}/parity.json" for model in MODELS]
    outputs += ["results/tables/icl_accuracy.csv"]
    if "copy" in TASKS:
        outputs += ["results/figures/copy_accuracy.png", "results/figures/copy_accuracy.pdf"]
    return outputs


def config_hash():
    """sha256 of the validated config (defaults filled): recorded in every result's metadata."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
