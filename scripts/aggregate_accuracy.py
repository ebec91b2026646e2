"""Rule aggregate_accuracy: samples logs -> one accuracy row per model x task x shots x seed."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
log = route_to_log(sm)

import pandas as pd

from iclab.io import write_table
from iclab.metrics import accuracy_table

samples = pd.concat([pd.read_parquet(path) for path in sm.input.samples], ignore_index=True)
table = accuracy_table(samples, ["model", "task", "shots", "seed"])
write_table(sm.output.table, table)
log.info("\n%s", table.to_string())
