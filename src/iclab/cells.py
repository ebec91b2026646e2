"""Per-cell result files: `results/{section}/{model}/{task}/{variant}/shots{K}_seed{S}/*.parquet`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CELL_KEYS = ["model", "task", "variant", "shots", "seed"]


def read_cell_table(path: str | Path) -> pd.DataFrame:
    """A per-cell table with its model, task, variant, shots and seed (from the path) in front."""
    cell = Path(path).parent
    shots, seed = cell.name.removeprefix("shots").split("_seed")
    frame = pd.read_parquet(path)
    tags = dict(zip(CELL_KEYS, (cell.parents[2].name, cell.parents[1].name, cell.parent.name,
                                int(shots), int(seed))))
    for i, (key, value) in enumerate(tags.items()):
        frame.insert(i, key, value)
    return frame
