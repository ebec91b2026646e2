"""Rule ablation_tables: head effects, importance, their rank correlation and pruning curves;
checks that importance was ranked on items the sweep and pruning curve never scored."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import pandas as pd

from iclab.ablation_tables import check_item_split, flag_counts, importance_vs_effects
from iclab.cells import read_cell_table
from iclab.io import write_table

effects = pd.concat([read_cell_table(p) for p in sm.input.effects], ignore_index=True)
importance = pd.concat([read_cell_table(p) for p in sm.input.importance], ignore_index=True)
pruning = pd.concat([read_cell_table(p) for p in sm.input.pruning], ignore_index=True)
check_item_split(effects, importance, pruning)
correlation = importance_vs_effects(importance, effects)
write_table(sm.output.effects, effects)
write_table(sm.output.importance, importance)
write_table(sm.output.correlation, correlation)
write_table(sm.output.pruning, pruning)
flags = flag_counts(effects)
write_table(sm.output.flags, flags)
log.info("\n%s\n%s", correlation.to_string(), flags.to_string())
