"""Plot rules: draw the figure named by params.kind from the rule's input tables (in order)."""
from iclab.rulelog import route_to_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
route_to_log(sm)

import pandas as pd

from iclab import plots

tables = [pd.read_csv(path) for path in sm.input]
getattr(plots, sm.params.kind)(*tables, sm.output.png, sm.output.pdf)
