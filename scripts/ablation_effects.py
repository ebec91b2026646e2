"""Rule ablation_effects: gather a sweep's shards into per-head and per-layer effects."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import pandas as pd

from iclab.ablation import effects
from iclab.io import write_table

results = pd.concat([pd.read_parquet(path) for path in sm.input.shards], ignore_index=True)
table = effects(results)
write_table(sm.output[0], table)
log.info("most harmful ablations:\n%s",
         table.sort_values("delta_logprob").head(10).to_string())
