"""Rule ablation_tables: head effects (zero and/or mean ablation), importance, their rank
correlation, pruning curves and the zero-vs-mean comparison; checks that importance was ranked
on items the sweep and pruning curve never scored."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

import pandas as pd

from iclab.ablation_tables import (
    check_item_split,
    compare_methods,
    flag_counts,
    importance_vs_effects,
)
from iclab.cells import CELL_KEYS, read_cell_table
from iclab.io import write_table

effects = pd.concat([read_cell_table(p).assign(method="mean" if Path(p).name.startswith("mean-")
                                               else "zero") for p in sm.input.effects],
                    ignore_index=True)
effects.insert(len(CELL_KEYS), "method", effects.pop("method"))
importance = pd.concat([read_cell_table(p) for p in sm.input.importance], ignore_index=True)
pruning = pd.concat([read_cell_table(p) for p in sm.input.pruning], ignore_index=True)
check_item_split(effects, importance, pruning)
correlation = importance_vs_effects(importance, effects)
write_table(sm.output.effects, effects)
write_table(sm.output.importance, importance)
write_table(sm.output.correlation, correlation)
write_table(sm.output.pruning, pruning)
flags = flag_counts(effects, [*CELL_KEYS, "method"])
write_table(sm.output.flags, flags)
methods = compare_methods(effects)
write_table(sm.output.methods, methods)
log.info("\n%s\n%s\n%s", correlation.to_string(), flags.to_string(), methods.to_string())
