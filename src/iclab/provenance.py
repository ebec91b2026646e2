"""Result metadata: what produced a table (config, model and graph hashes, provider, versions)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

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
    """sha256 of the validated config (defaults filled in), key order ignored."""
    from iclab.io import sha256_json

    return sha256_json(config)
