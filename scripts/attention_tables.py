"""Rule attention_tables: per-head metrics and baselines, head averages, induction scores, link to
ablation."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

from pathlib import Path

import pandas as pd

from iclab.ablation_tables import primary_method
from iclab.attention_metrics import HEAD_METRICS
from iclab.attention_tables import metrics_vs_effects
from iclab.cells import CELL_KEYS, read_cell_table
from iclab.io import write_table

per_example = pd.concat([read_cell_table(p) for p in sm.input.metrics], ignore_index=True)
metrics = (per_example.groupby([*CELL_KEYS, "layer", "head"])[HEAD_METRICS].mean()
           .reset_index())
average = (per_example.groupby(CELL_KEYS)[HEAD_METRICS].mean().reset_index()
           .rename(columns=lambda c: f"mean_{c}" if c in HEAD_METRICS else c))
induction = pd.concat([pd.read_parquet(p).assign(model=Path(p).parent.name)
                       for p in sm.input.induction], ignore_index=True)
induction = induction[["model"] + [c for c in induction.columns if c != "model"]]
effects = (primary_method(pd.read_csv(sm.input.effects[0])) if sm.input.effects
           else pd.DataFrame(columns=[*CELL_KEYS, "kind", "layer", "head", "delta_logprob"]))
correlation = metrics_vs_effects(metrics, induction, effects)
rows = pd.concat([read_cell_table(p) for p in sm.input.rows], ignore_index=True)

write_table(sm.output.metrics, metrics)
write_table(sm.output.average, average)
write_table(sm.output.induction, induction)
write_table(sm.output.correlation, correlation)
write_table(sm.output.rows, rows)
log.info("head averages:\n%s\ncorrelations:\n%s", average.to_string(), correlation.to_string())
