"""Shared benchmark helpers: machine description and result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

from iclab.provenance import package_versions

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu,
            "platform": platform.platform(), "packages": package_versions()}


def save(name: str, result: dict) -> Path:
    """Write benchmarks/results/{name}.json with the date and machine description."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
