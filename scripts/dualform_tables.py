"""Rule dualform_tables: per cell and model kind, the applicability verdict and every dual-form
quantity with intervals over items and demonstration sets; per-layer means."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import pandas as pd

from iclab.cells import CELL_KEYS, cell_tags, read_cell_table
from iclab.dualform_tables import layer_table, summary_table
from iclab.io import read_json, write_table

items = pd.concat([read_cell_table(p) for p in sm.input.per_item], ignore_index=True)
layers = pd.concat([read_cell_table(p) for p in sm.input.layers], ignore_index=True)
cells = {tuple(cell_tags(p)[k] for k in CELL_KEYS): read_json(p) for p in sm.input.summaries}
summary = summary_table(items, layers, cells)
write_table(sm.output.summary, summary)
write_table(sm.output.layers, layer_table(layers, summary))
log.info("\n%s", summary.iloc[:, :20].to_string())
