"""Checks on a schema-valid config that a JSON schema cannot express. Pure Python: runs at
DAG parse time, before any heavy work, and names the offending key."""

from __future__ import annotations

import math
from typing import Any

# Size of each built-in task's item list; a test item's demonstrations come from the others.
TASK_POOL_SIZES = {"copy": math.perm(8, 5)}


class ConfigError(ValueError):
    """The configuration is schema-valid but cannot work."""


def check_config(config: dict[str, Any]) -> None:
    names = [m["name"] for m in config["models"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"models: duplicate model name(s) {duplicates}; names must be unique")
    for task, settings in config["tasks"].items():
        pool = TASK_POOL_SIZES[task] - 1
        too_many = [k for k in settings["shots"] if k > pool]
        if too_many:
            raise ConfigError(
                f"tasks.{task}.shots: {too_many} larger than the demonstration pool ({pool} items)")
    runtime = config["runtime"]
    if runtime["fp16"] and runtime["provider"] == "cpu":
        raise ConfigError("runtime.fp16: true needs runtime.provider cuda or auto, not cpu")
