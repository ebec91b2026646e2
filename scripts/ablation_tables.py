"""Rule ablation_tables: head effects, importance, their rank correlation and pruning curves."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

import pandas as pd

from iclab.ablation import importance_vs_effects
from iclab.io import write_table


def tagged(path: str) -> pd.DataFrame:
    """A per-cell table with model, task, variant, shots and seed taken from its directory."""
    cell = Path(path).parent
    shots, seed = cell.name.removeprefix("shots").split("_seed")
    frame = pd.read_parquet(path)
    tags = {"model": cell.parents[2].name, "task": cell.parents[1].name,
            "variant": cell.parent.name, "shots": int(shots), "seed": int(seed)}
    for i, (key, value) in enumerate(tags.items()):
        frame.insert(i, key, value)
    return frame


effects = pd.concat([tagged(p) for p in sm.input.effects], ignore_index=True)
importance = pd.concat([tagged(p) for p in sm.input.importance], ignore_index=True)
pruning = pd.concat([tagged(p) for p in sm.input.pruning], ignore_index=True)
correlation = importance_vs_effects(importance, effects)
write_table(sm.output.effects, effects)
write_table(sm.output.importance, importance)
write_table(sm.output.correlation, correlation)
write_table(sm.output.pruning, pruning)
log.info("\n%s", correlation.to_string())
