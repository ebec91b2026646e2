"""Per-cell result files: `results/{section}/{model}/{task}/{variant}/shots{K}_seed{S}/*`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CELL_KEYS = ["model", "task", "variant", "shots", "seed"]


def cell_tags(path: str | Path) -> dict:
    """Model, task, variant, shots and seed of a per-cell file, read from its directory."""
    cell = Path(path).parent
    shots, seed = cell.name.removeprefix("shots").split("_seed")
    return dict(zip(CELL_KEYS, (cell.parents[2].name, cell.parents[1].name, cell.parent.name,
                                int(shots), int(seed))))


def read_cell_table(path: str | Path) -> pd.DataFrame:
    """A per-cell parquet table with its cell tags as leading columns."""
    frame = pd.read_parquet(path)
    for i, (key, value) in enumerate(cell_tags(path).items()):
        frame.insert(i, key, value)
    return frame


def cell_examples(wildcards, task_settings: dict, n_test: int | None,
                  demonstrations: str | None = None):
    """The examples of the cell named by a rule's wildcards (task, variant, shots, seed);
    `demonstrations` (per_item | shared) defaults to the task's setting."""
    from iclab.tasks import build_examples

    return build_examples(wildcards.task, n_test, int(wildcards.shots), int(wildcards.seed),
                          variant=wildcards.variant, settings=task_settings,
                          demonstrations=demonstrations
                          or task_settings.get("demonstrations", "per_item"))

