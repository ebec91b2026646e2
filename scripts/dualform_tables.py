"""Rule dualform_tables: per-cell summaries and per-layer means, trained model vs control."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import pandas as pd

from iclab.cells import CELL_KEYS, cell_tags, read_cell_table
from iclab.io import read_json, write_table

summary = pd.DataFrame([
    {**cell_tags(path), "model_kind": kind,
     **{k: v for k, v in values.items() if k not in ("demonstrations", "validation_accuracy_by_lr")}}
    for path in sm.input.summaries
    for kind, values in read_json(path).items() if kind in ("trained", "control")])
first = ["accuracy_zsl", "accuracy_icl", "accuracy_ft", "rec2ftp", "rec2ftp_denominator", "simaou",
         "simaou_random", "simam_icl_ft", "simam_icl_zsl", "kendall", "learning_rate"]
summary = summary[[*CELL_KEYS, "model_kind", *first,
                   *[c for c in summary.columns if c not in (*CELL_KEYS, "model_kind", *first)]]]
per_item = pd.concat([read_cell_table(p) for p in sm.input.layers], ignore_index=True)
metrics = ["simaou", "simaou_random", "simam_icl_ft", "simam_icl_zsl", "kendall"]
layers = per_item.groupby([*CELL_KEYS, "model_kind", "layer"])[metrics].mean().reset_index()
write_table(sm.output.summary, summary)
write_table(sm.output.layers, layers)
log.info("\n%s", summary.to_string())
