"""Result metadata: what produced a table (config, model and graph hashes, providers, versions, seeds)."""

from __future__ import annotations

import copy
import platform
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

PACKAGES = ["iclab", "torch", "transformers", "onnx", "onnxruntime-gpu", "onnxruntime",
            "numpy", "pandas", "pyarrow", "snakemake"]


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine() -> dict[str, str]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}


def config_hash(config: dict) -> str:
    """sha256 of the validated config (defaults filled in), key order ignored. A custom task's
    file enters by its content, not its path, so the hash does not depend on the checkout's place."""
    from iclab.io import sha256_file, sha256_json

    config = copy.deepcopy(config)
    for settings in config.get("tasks", {}).values():
        if settings.get("path") and Path(settings["path"]).exists():
            settings["path"] = "sha256:" + sha256_file(settings["path"])
    return sha256_json(config)


def seeds(config: dict) -> dict:
    """Every seed the config sets: sampling seeds, per-analysis seeds, random-model init seeds."""
    found = {"sampling": list(config["seeds"])}
    for section in ("ablation", "attention", "dualform"):
        for key in ("seed", "control_seed"):
            if key in config.get(section, {}):
                found[f"{section}.{key}"] = config[section][key]
    toy = config.get("toy", {})
    if toy.get("enabled"):
        found["toy.induction.seeds"] = toy["induction"]["seeds"]
        found["toy.lsa.seeds"] = toy["lsa"]["seeds"]
        found["toy.text_icl.seed"] = toy["text_icl"]["seed"]
    for model in config["models"]:
        if model["source"] == "random":
            found[f"models.{model['name']}.seed"] = model.get("seed", 0)
    return found


def providers_used(paths: Iterable[str | Path]) -> list[str]:
    """Execution providers read back by inference jobs: `provider` of a sample log's .meta.json,
    or the `provider` column of a parquet output."""
    import pandas as pd

    from iclab.io import read_json

    found: set[str] = set()
    for path in map(Path, paths):
        if path.suffix == ".json":
            found.add(read_json(path)["provider"])
        elif path.suffix == ".parquet":
            found.update(pd.read_parquet(path, columns=["provider"])["provider"].unique())
    return sorted(found)
